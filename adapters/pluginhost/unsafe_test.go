package pluginhost

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdmdr/mirror/ports"
)

// nobody is a uid other than root and the test's own user, for the
// ownership checks (they need root to chown).
const nobody = 65534

// chownNobody gives path to another user, or skips the test when only
// root may do so.
func chownNobody(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	if err := os.Lchown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
}

// TestUnsafePluginFiles: a plugin file that its group or anyone may
// write, one that another user owns, a link to a world-writable binary
// and a link into a directory others may write are each refused with an
// error naming the path and the mode; a safe link beside them loads.
func TestUnsafePluginFiles(t *testing.T) {
	dir := t.TempDir()
	elsewhere := t.TempDir()
	open := t.TempDir()
	if err := os.Chmod(open, 0o775); err != nil {
		t.Fatal(err)
	}

	groupW := writePlugin(t, dir, "groupw", "-types=openstack.storage.type.g")
	if err := os.Chmod(groupW, 0o775); err != nil {
		t.Fatal(err)
	}
	worldTarget := writePlugin(t, elsewhere, "worldw", "-types=openstack.storage.type.w")
	if err := os.Chmod(worldTarget, 0o757); err != nil {
		t.Fatal(err)
	}
	linkToWritable := filepath.Join(dir, "linkw")
	if err := os.Symlink(worldTarget, linkToWritable); err != nil {
		t.Fatal(err)
	}
	inOpenDir := writePlugin(t, open, "inopen", "-types=openstack.storage.type.o")
	linkIntoOpen := filepath.Join(dir, "linko")
	if err := os.Symlink(inOpenDir, linkIntoOpen); err != nil {
		t.Fatal(err)
	}
	goodTarget := writePlugin(t, elsewhere, "good", "-types="+exampleType)
	goodLink := filepath.Join(dir, "example")
	if err := os.Symlink(goodTarget, goodLink); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		groupW:         "plugin file " + groupW + " is group-writable (mode 0775)",
		linkToWritable: "plugin file " + linkToWritable + " (a link to " + worldTarget + ") is world-writable (mode 0757)",
		linkIntoOpen:   "plugin file " + linkIntoOpen + " (a link to " + inOpenDir + ") lies in directory " + open + ", which is group-writable (mode 0775)",
	}
	if os.Geteuid() == 0 {
		foreign := writePlugin(t, dir, "foreign", "-types=openstack.storage.type.f")
		chownNobody(t, foreign)
		want[foreign] = "plugin file " + foreign + " is owned by uid 65534, neither root nor the daemon's user (uid 0) (mode 0755)"
	}

	host := startHost(t, Config{Dir: dir}, nil)
	for path, msg := range want {
		st := status(t, host, path)
		if st.State != StateRefused || st.Err == nil || !strings.Contains(st.Err.Error(), msg) {
			t.Errorf("%s: %+v, want refused with %q", filepath.Base(path), st, msg)
		}
		t.Logf("%s refused: %v", filepath.Base(path), st.Err)
	}
	if st := status(t, host, goodLink); st.State != StateRunning {
		t.Errorf("a link to a safe binary: %+v, want running", st)
	}
	for _, typ := range []string{"openstack.storage.type.g", "openstack.storage.type.w", "openstack.storage.type.o"} {
		if _, err := host.For(t.Context(), typ); !errors.Is(err, ports.ErrNoBackend) {
			t.Errorf("For(%s) of a refused plugin = %v, want ErrNoBackend", typ, err)
		}
	}
}

// TestUnsafePluginDir: nothing is loaded from a directory its group may
// write, or that another user owns; For names the path and the mode.
func TestUnsafePluginDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, dir string)
		want string
	}{
		{"group-writable", func(t *testing.T, dir string) {
			if err := os.Chmod(dir, 0o775); err != nil {
				t.Fatal(err)
			}
		}, "is group-writable (mode 0775): no plugin is loaded from it until it is not (chmod go-w "},
		{"foreign owner", func(t *testing.T, dir string) {
			chownNobody(t, dir)
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "is owned by uid 65534, neither root nor the daemon's user (uid 0) (mode 0755): no plugin is loaded from it until it is not (chown root "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writePlugin(t, dir, "example", "-types="+exampleType)
			tc.make(t, dir)
			host := startHost(t, Config{Dir: dir}, nil)
			_, err := host.For(t.Context(), exampleType)
			if !errors.Is(err, ports.ErrNoBackend) || !strings.Contains(err.Error(), "plugin directory "+dir+" "+tc.want) {
				t.Fatalf("For with an unsafe plugin directory = %v, want %q", err, tc.want)
			}
			t.Logf("For: %v", err)
		})
	}
}
