package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"syscall"
)

// refusal is a request the agent will not serve: its status and the
// message the caller reads.
type refusal struct {
	status int
	msg    string
}

func (r *refusal) Error() string { return r.msg }

func refuse(status int, format string, args ...any) error {
	return &refusal{status: status, msg: fmt.Sprintf(format, args...)}
}

// checkName accepts one path element that is not hidden: a volume file's
// name, never a path.
func checkName(name string) error {
	switch {
	case name == "":
		return refuse(http.StatusBadRequest, "no file name")
	case len(name) > 255:
		return refuse(http.StatusBadRequest, "file name longer than 255 bytes")
	case strings.ContainsAny(name, "/\\\x00"):
		return refuse(http.StatusBadRequest, "file name %q is a path: only a name directly in the agent's directory is served", name)
	case strings.HasPrefix(name, "."):
		return refuse(http.StatusBadRequest, "file name %q starts with a dot: refused", name)
	}
	return nil
}

// open opens name for reading through the directory's root, refusing
// anything but a regular file: a symlink (even one pointing inside), a
// directory, a fifo or a device.
func (s *Server) open(name string) (*os.File, fs.FileInfo, error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	fi, err := s.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, refuse(http.StatusNotFound, "no file %q in the agent's directory", name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("stat %s: %w", name, err)
	}
	if err := regular(name, fi); err != nil {
		return nil, nil, err
	}
	// O_NONBLOCK: should name become a fifo after the Lstat, opening it
	// must not wait for a writer; the check below then refuses it.
	f, err := s.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, refuse(http.StatusNotFound, "no file %q in the agent's directory", name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", name, err)
	}
	ofi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat %s: %w", name, err)
	}
	if err := regular(name, ofi); err != nil {
		f.Close()
		return nil, nil, err
	}
	if !os.SameFile(fi, ofi) {
		f.Close()
		return nil, nil, refuse(http.StatusBadRequest, "%q was replaced while being opened (a symlink?): refused", name)
	}
	return f, ofi, nil
}

func regular(name string, fi fs.FileInfo) error {
	m := fi.Mode()
	switch {
	case m&fs.ModeSymlink != 0:
		return refuse(http.StatusBadRequest, "%q is a symbolic link: refused, only regular files are served", name)
	case m.IsDir():
		return refuse(http.StatusBadRequest, "%q is a directory: refused, only regular files are served", name)
	case !m.IsRegular():
		return refuse(http.StatusBadRequest, "%q is not a regular file (%s): refused", name, m.Type())
	}
	return nil
}
