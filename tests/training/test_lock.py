"""One writer per run folder: RunLock refuses a live second writer in one line, takes over stale locks with a
message, nests within a process and leaves nothing behind."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from straightflow.training.lock import LOCK, RunLock, read_lock


def _write_lock(folder, **info):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK).write_text(json.dumps({"pid": 1, "host": socket.gethostname(), "started": time.time(),
                                           "command": "straightflow train", "token": "x", **info}))


def test_lock_file_names_this_process_while_held_and_is_removed_after(tmp_path):
    with RunLock(tmp_path / "run", command="straightflow train --out run"):
        info = read_lock(tmp_path / "run")
        assert (info["pid"], info["host"]) == (os.getpid(), socket.gethostname())
        assert info["command"] == "straightflow train --out run"
    assert not (tmp_path / "run" / LOCK).exists()


def test_a_second_process_gets_a_one_line_error_naming_the_holder(tmp_path):
    code = ("import sys; from straightflow.training.lock import RunLock\n"
            "try:\n    RunLock(sys.argv[1]).acquire()\nexcept ValueError as e:\n    print(e); sys.exit(3)\n")
    with RunLock(tmp_path):
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    message = done.stdout.strip()
    assert "\n" not in message and "is locked by" in message and f"pid {os.getpid()}" in message


def test_the_lock_is_reentrant_within_a_process_and_released_by_the_outermost(tmp_path):
    outer = RunLock(tmp_path).acquire()
    with RunLock(tmp_path):
        pass
    assert (tmp_path / LOCK).exists()  # the inner release keeps the outer holder's lock
    outer.release()
    assert not (tmp_path / LOCK).exists()


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over_with_a_message(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_lock(tmp_path, pid=int(dead.stdout))
    with RunLock(tmp_path):
        assert read_lock(tmp_path)["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert "taking over the stale lock" in err and "no longer running" in err and err.count("\n") == 1


def test_a_lock_whose_pid_now_belongs_to_another_process_is_stale(tmp_path):
    _write_lock(tmp_path, pid=os.getpid(), pid_start="1")  # our pid, but a process started at another time
    with RunLock(tmp_path):
        assert read_lock(tmp_path)["pid_start"] != "1"


def test_another_hosts_lock_is_kept_while_fresh_and_taken_over_once_untouched_for_long(tmp_path):
    _write_lock(tmp_path, host="elsewhere", pid=123)
    with pytest.raises(ValueError, match="locked by pid 123 on host elsewhere"):
        RunLock(tmp_path, stale_after=600).acquire()
    old = time.time() - 700
    os.utime(tmp_path / LOCK, (old, old))
    with RunLock(tmp_path, stale_after=600):
        assert read_lock(tmp_path)["host"] == socket.gethostname()


def test_the_holder_touches_its_lock_so_other_hosts_see_it_alive(tmp_path):
    with RunLock(tmp_path, heartbeat=0.05):
        old = time.time() - 1000
        os.utime(tmp_path / LOCK, (old, old))
        time.sleep(0.3)
        assert time.time() - (tmp_path / LOCK).stat().st_mtime < 5


def test_an_unreadable_lock_is_stale_only_once_old(tmp_path):
    (tmp_path / LOCK).write_text("")  # a writer killed between creating and filling the file
    with pytest.raises(ValueError, match="locked"):
        RunLock(tmp_path).acquire()
    old = time.time() - 60
    os.utime(tmp_path / LOCK, (old, old))
    with RunLock(tmp_path):
        assert read_lock(tmp_path)["pid"] == os.getpid()


def test_release_leaves_a_lock_that_another_writer_took_over(tmp_path):
    lock = RunLock(tmp_path).acquire()
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "token": "theirs"}))
    lock.release()
    assert read_lock(tmp_path)["token"] == "theirs"


def test_an_out_that_cannot_be_created_is_a_one_line_error_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="cannot create the run folder .*choose a writable --out"):
        RunLock(tmp_path / "file" / "run").acquire()
