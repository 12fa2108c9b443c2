"""Drives `vsh` on a terminal the way a person would, for VshTests.terminalSession.

usage: pty-session.py VSH SOCKET SLIVER

Runs `VSH --socket SOCKET SLIVER -- sh -c SCRIPT` on a fresh pty (30 rows x 100 columns) and:
  1. expects the sliver's pty to report that size (`stty size`);
  2. resizes the terminal to 40x120 (the kernel sends SIGWINCH to vsh) and expects the new size;
  3. types Ctrl-C while `sleep` runs: the sliver's own terminal turns it into SIGINT there;
  4. types a line and Ctrl-D: `cat` echoes the line and ends on EOF;
  5. expects vsh to exit with the script's status, 3.
Prints one line per step that passed and exits non-zero with what it saw on the first failure.
"""
import fcntl, os, pty, select, signal, struct, sys, termios, time

vsh, sock, sliver = sys.argv[1:4]
script = ("stty size; read go; stty size; trap 'echo got-int' INT; "
          "sleep 20; echo after-sleep; cat; echo cat-done; exit 3")
seen = b""


def winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def expect(fd, text, timeout=10.0):
    global seen
    deadline = time.time() + timeout
    while text.encode() not in seen:
        left = deadline - time.time()
        if left <= 0:
            sys.exit(f"timed out waiting for {text!r}; the terminal showed {seen!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                sys.exit(f"terminal closed waiting for {text!r}; it showed {seen!r}")
            seen += chunk
    # Consume up to the match so the next expectation looks at what follows.
    seen = seen[seen.index(text.encode()) + len(text):]


pid, master = pty.fork()
if pid == 0:
    winsize(0, 30, 100)
    os.execv(vsh, [vsh, "--socket", sock, sliver, "--", "/bin/sh", "-c", script])
winsize(master, 30, 100)
expect(master, "30 100")
print("size 30 100")
winsize(master, 40, 120)  # SIGWINCH to vsh, the terminal's foreground process
time.sleep(0.3)
os.write(master, b"go\r")
expect(master, "40 120")
print("resized 40 120")
time.sleep(0.5)  # sleep is running
os.write(master, b"\x03")
expect(master, "got-int")
expect(master, "after-sleep")
print("ctrl-c")
time.sleep(0.3)  # cat is reading
os.write(master, b"hello-cat\r")
expect(master, "hello-cat")  # the echo of the typed line
expect(master, "hello-cat")  # cat's output
os.write(master, b"\x04")
expect(master, "cat-done")
print("eof")
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
if code != 3:
    sys.exit(f"vsh exited with {code}, expected 3; the terminal showed {seen!r}")
print("status 3")
