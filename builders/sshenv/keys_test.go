package sshenv_test

import (
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/builders/sshenv"
)

func TestParseAuthorizedKeys(t *testing.T) {
	ed := newClientKey(t).authorized
	tests := []struct {
		name    string
		lines   []string
		want    int      // keys returned
		wantErr []string // substrings of the error
	}{
		{name: "ed25519", lines: []string{ed}, want: 1},
		{name: "ecdsa", lines: []string{ecdsa256}, want: 1},
		{name: "rsa 2048", lines: []string{rsa2048}, want: 1},
		{name: "several lines, comments and blanks", lines: []string{"# keys\n\n" + ed + "\n" + ecdsa256 + "\n", rsa2048}, want: 3},
		{name: "rsa 1024", lines: []string{rsa1024}, wantErr: []string{"key 1", "rsa1024", "1024 bits", "at least 2048"}},
		{name: "dsa", lines: []string{dsa}, wantErr: []string{"ssh-dss", "not accepted"}},
		{name: "certificate", lines: []string{ecdsaCert}, wantErr: []string{"certificates are not supported"}},
		{name: "options", lines: []string{`command="/bin/true" ` + ed}, wantErr: []string{"options", "not supported"}},
		{name: "garbage", lines: []string{"ssh-ed25519 notbase64"}, wantErr: []string{"key 1"}},
		{name: "every bad line reported", lines: []string{ed, rsa1024, dsa}, wantErr: []string{"key 2", "key 3"}},
		{name: "none", lines: []string{"# nothing", ""}, wantErr: []string{"no authorized keys"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := sshenv.ParseAuthorizedKeys(tc.lines)
			if len(tc.wantErr) == 0 {
				if err != nil || len(keys) != tc.want {
					t.Fatalf("ParseAuthorizedKeys() = %d keys, %v; want %d keys", len(keys), err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseAuthorizedKeys() = %d keys, want an error", len(keys))
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("ParseAuthorizedKeys() error %q lacks %q", err, s)
				}
			}
		})
	}
}
