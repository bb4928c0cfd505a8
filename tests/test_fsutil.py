"""Outputs: the old file or the whole new one; devices, links and FIFOs kept what they are."""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nnkit.errors import OutputPathError
from nnkit.fsutil import (
    atomic_output,
    check_distinct,
    check_writable,
    temporary_folder,
    write_error,
    write_text,
)
from tests._hostile import device_node, stdout_link


def test_success_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_or_ctrl_c_keeps_the_old_file_and_cleans_up(tmp_path, exc):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(type(exc)), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise exc
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_new_file_gets_the_umask_mode_not_0600(tmp_path):
    target = tmp_path / "fresh.txt"
    write_text(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_unwritable_paths_are_refused_up_front(tmp_path):
    with pytest.raises(OutputPathError, match="does not exist"):
        check_writable(tmp_path / "missing" / "f.onnx")
    with pytest.raises(OutputPathError, match="is a directory"):
        check_writable(tmp_path)
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(OutputPathError, match="not writable"):
            check_writable(ro / "f.onnx")


# -- devices, links, FIFOs, special files ---------------------------------------------


def test_a_character_device_is_written_into_never_replaced(tmp_path):
    # /dev/null's own device (a private node as root: see device_node). Renaming a file
    # over it, as nnkit did, replaced /dev/null with a regular file for every process.
    null = device_node(tmp_path, "null")
    before = os.stat(null)
    write_text(null, "report\n")
    after = os.stat(null)
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert not list(null.parent.glob(f".{null.name}.*"))


def test_a_full_device_is_one_clear_error(tmp_path):
    full = device_node(tmp_path, "full")
    with pytest.raises(OutputPathError, match=rf"cannot write '{full}': No space left"):
        write_text(full, "x" * 100_000)
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_a_symlink_stays_a_link_and_its_target_gets_the_content(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to("real.txt")
    write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == "real.txt"
    assert real.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["link.txt", "real.txt"]


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.txt"
    link.symlink_to("made.txt")
    write_text(link, "new")
    assert link.is_symlink() and (tmp_path / "made.txt").read_text() == "new"


def test_a_chain_of_links_into_another_folder(tmp_path):
    (tmp_path / "a").mkdir()
    real = tmp_path / "a" / "real.txt"
    real.write_text("old")
    (tmp_path / "hop.txt").symlink_to(real)
    (tmp_path / "link.txt").symlink_to("hop.txt")
    write_text(tmp_path / "link.txt", "new")
    assert real.read_text() == "new"
    assert (tmp_path / "link.txt").is_symlink() and (tmp_path / "hop.txt").is_symlink()


def test_a_fifo_receives_the_data(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            received.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    write_text(fifo, "through the pipe")
    reader.join(timeout=10)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["pipe"]


def test_dev_stdout_redirected_to_a_file_appends_after_what_was_printed(tmp_path):
    # Through a private link to /proc/self/fd/1, as /dev/stdout is: a regression must
    # not replace the machine's /dev/stdout.
    link = stdout_link(tmp_path)
    out = tmp_path / "out.txt"
    code = (
        "import sys\n"
        "from nnkit.fsutil import write_text\n"
        "print('printed first')\n"
        f"write_text({str(link)!r}, 'then the file\\n')\n"
        "print('printed last')\n"
    )
    with out.open("w") as f:
        subprocess.run([sys.executable, "-c", code], stdout=f, timeout=60, check=True)
    assert out.read_text() == "printed first\nthen the file\nprinted last\n"
    assert link.is_symlink()


def test_descriptor_names_are_written_into(tmp_path):
    # stdout and stderr are regular files: a name that were taken for a file to replace
    # would put a new file in place of each, and what was printed before would be lost.
    code = (
        "import sys\n"
        "from nnkit.fsutil import write_text\n"
        "print('before', flush=True); print('before', file=sys.stderr, flush=True)\n"
        "for name in ('/dev/stdout', '/dev/stderr', '/dev/fd/1', '/proc/self/fd/2'):\n"
        "    write_text(name, name + '\\n')\n"
        "print('after'); print('after', file=sys.stderr)\n"
    )
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as o, err.open("w") as e:
        subprocess.run([sys.executable, "-c", code], stdout=o, stderr=e, timeout=60, check=True)
    assert out.read_text() == "before\n/dev/stdout\n/dev/fd/1\nafter\n"
    assert err.read_text() == "before\n/dev/stderr\n/proc/self/fd/2\nafter\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["err.txt", "out.txt"]


def test_sockets_and_block_devices_are_refused(tmp_path):
    sock_path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        with pytest.raises(OutputPathError, match="it is a socket"):
            check_writable(sock_path)
    finally:
        server.close()
    block = tmp_path / "blk"
    try:
        os.mknod(block, stat.S_IFBLK | 0o600, os.makedev(7, 0))
    except PermissionError:
        pytest.skip("making a block device node needs root")
    with pytest.raises(OutputPathError, match="it is a block device"):
        write_text(block, "x")
    assert stat.S_ISBLK(os.stat(block).st_mode)


# -- names, temporary names and OS errors -------------------------------------------


@pytest.mark.parametrize("length", [243, 250, 255])
def test_names_up_to_name_max_work_though_the_temporary_name_is_longer(tmp_path, length):
    target = tmp_path / ("n" * (length - 4) + ".npz")
    assert len(target.name) == length
    write_text(target, "fits")
    assert target.read_text() == "fits"
    assert os.listdir(tmp_path) == [target.name]


def test_a_name_over_name_max_is_one_clear_error(tmp_path):
    with pytest.raises(OutputPathError, match=r"the file name is 260 bytes, over .* limit of 255"):
        check_writable(tmp_path / ("n" * 256 + ".npz"))
    with pytest.raises(OutputPathError, match="File name too long"):
        check_writable(tmp_path / ("d" * 300) / "f.npz")


def test_a_full_disk_keeps_the_old_file_and_names_the_path(full_disk):
    target = full_disk / "out.bin"
    target.write_text("old")
    with (
        pytest.raises(OutputPathError, match=r"out.bin': No space left on device"),
        atomic_output(target) as tmp,
    ):
        tmp.write_bytes(b"\0" * 200_000)
    assert target.read_text() == "old"
    assert os.listdir(full_disk) == ["out.bin"]


def test_a_writer_that_wraps_the_disk_error_is_not_blamed(full_disk):
    # An exporter catches the OSError and raises its own error "from None": the full
    # disk is still what the user must hear about, not "try the other exporter".
    class WriterError(Exception):
        pass

    with (
        pytest.raises(OutputPathError, match="No space left on device") as info,
        atomic_output(full_disk / "m.onnx") as tmp,
    ):
        try:
            tmp.write_bytes(b"\0" * 200_000)
        except OSError:
            raise WriterError("the exporter failed; try --exporter dynamo") from None
    assert isinstance(info.value.__cause__, WriterError)
    assert os.listdir(full_disk) == []


def test_write_error_finds_the_cause_behind_wrappers():
    disk = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    try:
        try:
            raise disk
        except OSError:
            raise RuntimeError("wrapped") from None
    except RuntimeError as wrapped:
        assert write_error(wrapped) is disk
    assert write_error(RuntimeError("unrelated")) is None
    assert write_error(FileNotFoundError(errno.ENOENT, "gone")) is None


# -- an output that is an input --------------------------------------------------------


def test_outputs_that_are_inputs_are_refused_through_links_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "a.npz"
    data.write_bytes(b"input")
    (tmp_path / "hard.npz").hardlink_to(data)
    (tmp_path / "soft.npz").symlink_to("a.npz")
    (tmp_path / "sub").mkdir()
    for alias in ["a.npz", "./a.npz", "sub/../a.npz", str(data), "hard.npz", "soft.npz"]:
        with pytest.raises(OutputPathError, match="is the same file as --input"):
            check_distinct([("--save", Path(alias))], [("--input", data)])
    check_distinct([("--save", Path("b.npz"))], [("--input", data)])
    with pytest.raises(OutputPathError, match="are one file"):
        check_distinct([("--json", Path("r")), ("--junit", Path("./r"))], [])
    # Devices may take several outputs: --json /dev/stdout --markdown /dev/stdout.
    check_distinct([("--json", Path("/dev/stdout")), ("--markdown", Path("/dev/stdout"))], [])
    assert data.read_bytes() == b"input"


def test_a_temporary_folder_is_removed_while_a_dying_process_still_writes_into_it(tmp_path):
    # A worker stopped by a signal can add a file while the folder is being removed:
    # one rmtree then leaves the folder behind; the folder must go all the same.
    def writer(folder: Path) -> None:  # a few last files, then the process is gone
        for index in range(300):
            try:
                (folder / f"part{index}").write_bytes(b"x" * 1024)
            except OSError:  # the folder is gone
                return

    with temporary_folder("nnkit-test-", dir=tmp_path) as folder:
        for index in range(200):
            (folder / f"f{index}").write_bytes(b"x")
        thread = threading.Thread(target=writer, args=(folder,))
        thread.start()
    thread.join(timeout=10)
    assert not folder.exists(), sorted(os.listdir(folder))[:5]
