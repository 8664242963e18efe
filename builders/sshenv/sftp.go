package sshenv

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/builders/sandbox"
)

// runSFTP serves the sftp subsystem on the channel until the client ends it
// or ctx is done.
func (s *session) runSFTP(ctx context.Context) int {
	mount, start := "/", "/"
	switch {
	case s.srv.cfg.Jail:
	case s.srv.cfg.imsRoot() != "":
		// Only the image: the flag files are touched from a shell.
		mount, start = s.srv.cfg.imsRoot(), s.srv.cfg.imsRoot()
	default:
		mount, start = sandbox.ImageDir, sandbox.ImageDir
	}
	rfs, err := openRootFS(s.srv.cfg.Root, mount)
	if err != nil {
		s.log.Info("sftp", "err", err)
		return 1
	}
	defer rfs.Close()
	rs := sftp.NewRequestServer(s.ch, newSFTPHandlers(rfs), sftp.WithStartDirectory(start))
	stop := context.AfterFunc(ctx, func() { rs.Close() })
	defer stop()
	if err := rs.Serve(); err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
		s.log.Info("sftp", "err", err)
		return 1
	}
	return 0
}

// sftpHandlers serve SFTP requests from a rootFS.
type sftpHandlers struct{ fs *rootFS }

func newSFTPHandlers(r *rootFS) sftp.Handlers {
	h := &sftpHandlers{fs: r}
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
}

// Fileread opens a file for reading.
func (h *sftpHandlers) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	return h.fs.Open(r.Filepath, os.O_RDONLY, 0)
}

// Filewrite opens a file for writing.
func (h *sftpHandlers) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return h.open(r)
}

// OpenFile opens a file for reading and writing.
func (h *sftpHandlers) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	return h.open(r)
}

func (h *sftpHandlers) open(r *sftp.Request) (*os.File, error) {
	pf := r.Pflags()
	flags := os.O_WRONLY
	if pf.Read {
		flags = os.O_RDWR
	}
	// No O_APPEND: writes come with offsets, and WriteAt refuses O_APPEND.
	if pf.Creat {
		flags |= os.O_CREATE
	}
	if pf.Trunc {
		flags |= os.O_TRUNC
	}
	if pf.Excl {
		flags |= os.O_EXCL
	}
	mode := uint32(0o644)
	if a := r.Attributes(); r.AttrFlags().Permissions && a != nil {
		mode = uint32(a.FileMode().Perm())
	}
	return h.fs.Open(r.Filepath, flags, mode)
}

// Filecmd runs the commands that return only a status.
func (h *sftpHandlers) Filecmd(r *sftp.Request) error {
	switch r.Method {
	case "Setstat":
		return h.fs.Setstat(r.Filepath, requestAttrs(r))
	case "Rename":
		return h.fs.Rename(r.Filepath, r.Target, false)
	case "Rmdir":
		return h.fs.Remove(r.Filepath, true)
	case "Remove":
		return h.fs.Remove(r.Filepath, false)
	case "Mkdir":
		mode := uint32(0o755)
		if a := r.Attributes(); r.AttrFlags().Permissions && a != nil {
			mode = uint32(a.FileMode().Perm())
		}
		return h.fs.Mkdir(r.Filepath, mode)
	case "Link":
		return h.fs.Link(r.Filepath, r.Target)
	case "Symlink":
		// pkg/sftp: Filepath is the link's target, Target the new link.
		return h.fs.Symlink(r.Filepath, r.Target)
	}
	return sftp.ErrSSHFxOpUnsupported
}

// PosixRename renames, replacing an existing target.
func (h *sftpHandlers) PosixRename(r *sftp.Request) error {
	return h.fs.Rename(r.Filepath, r.Target, true)
}

// StatVFS reports the file system of the root, for df in sftp clients.
func (h *sftpHandlers) StatVFS(r *sftp.Request) (*sftp.StatVFS, error) {
	f, err := h.fs.Open(r.Filepath, unix.O_PATH, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return nil, &fs.PathError{Op: "statvfs", Path: r.Filepath, Err: err}
	}
	return &sftp.StatVFS{
		Bsize: uint64(st.Bsize), Frsize: uint64(st.Frsize),
		Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail,
		Files: st.Files, Ffree: st.Ffree, Favail: st.Ffree,
		Fsid: uint64(uint32(st.Fsid.Val[0]))<<32 | uint64(uint32(st.Fsid.Val[1])), Flag: uint64(st.Flags), Namemax: uint64(st.Namelen),
	}, nil
}

// Filelist serves List and Stat.
func (h *sftpHandlers) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	switch r.Method {
	case "List":
		infos, err := h.fs.ReadDir(r.Filepath)
		return listerAt(infos), err
	case "Stat":
		fi, err := h.fs.Stat(r.Filepath, true)
		if err != nil {
			return nil, err
		}
		return listerAt{fi}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat serves Lstat.
func (h *sftpHandlers) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	fi, err := h.fs.Stat(r.Filepath, false)
	if err != nil {
		return nil, err
	}
	return listerAt{fi}, nil
}

// Readlink serves Readlink.
func (h *sftpHandlers) Readlink(p string) (string, error) {
	return h.fs.Readlink(p)
}

// requestAttrs extracts what a setstat request changes.
func requestAttrs(r *sftp.Request) attrs {
	var a attrs
	st := r.Attributes()
	if st == nil {
		return a
	}
	af := r.AttrFlags()
	if af.Size {
		size := int64(st.Size)
		a.size = &size
	}
	if af.Permissions {
		m := st.FileMode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		a.mode = &m
	}
	if af.UidGid {
		uid, gid := int(st.UID), int(st.GID)
		a.uid, a.gid = &uid, &gid
	}
	if af.Acmodtime {
		at, mt := time.Unix(int64(st.Atime), 0), time.Unix(int64(st.Mtime), 0)
		a.atime, a.mtime = &at, &mt
	}
	return a
}

// listerAt lists a slice of file infos.
type listerAt []fs.FileInfo

func (l listerAt) ListAt(out []fs.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}
