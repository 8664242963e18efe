package spec

import "testing"

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"131072", 131072, false},
		{"128K", 128 << 10, false},
		{"1M", 1 << 20, false},
		{"1MiB", 1 << 20, false},
		{"50G", 50 << 30, false},
		{"2TB", 2 << 40, false},
		{" 4k ", 4 << 10, false},
		{"", 0, true},
		{"1.5G", 0, true},
		{"-1M", 0, true},
		{"0", 0, true},
		{"12X", 0, true},
		{"9999999999T", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
