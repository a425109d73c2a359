"""The daemon's logging: per-message lines are queued and written by one thread per process;
everything else is written at once."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from aclmilter.service import logsetup


@pytest.fixture
def log_file(tmp_path: Path):
    """The aclmilter logger set up as the daemon does, writing to a file instead of stderr."""
    path = tmp_path / "stderr.log"
    stream = path.open("w", encoding="utf-8")
    logsetup.setup("info", stream=stream)
    yield path
    for name in ("aclmilter", logsetup.MESSAGE_LOGGER):
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            logger.removeHandler(h)
            h.close()
    stream.close()


def _close_handlers() -> None:
    for h in logging.getLogger(logsetup.MESSAGE_LOGGER).handlers:
        h.close()        # writes what is queued, stops the writer


def test_every_line_from_many_threads_is_written_once_in_each_threads_order(log_file: Path) -> None:
    msglog = logging.getLogger("aclmilter.message")

    def worker(n: int) -> None:
        for i in range(200):
            logsetup.message_line(msglog, f"t={n} i={i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _close_handlers()
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1600
    for n in range(8):
        mine = [int(line.rsplit("i=", 1)[1]) for line in lines if f" t={n} " in line]
        assert mine == list(range(200))
    assert all(f"aclmilter[{os.getpid()}] INFO t=" in line for line in lines)


def test_other_records_are_written_at_once_with_levels_arguments_and_tracebacks(log_file: Path) -> None:
    log = logging.getLogger("aclmilter")
    log.debug("hidden %s", "debug")
    log.warning("value %s", ["before"])
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    text = log_file.read_text()            # no writer thread to wait for (the handler flushes)
    assert "hidden" not in text
    assert "WARNING value ['before']" in text
    assert "ERROR failed\nTraceback (most recent call last):" in text and "ValueError: boom" in text


def test_a_queued_line_keeps_the_text_of_the_moment_it_was_logged(log_file: Path) -> None:
    values = ["before"]
    logging.getLogger(logsetup.MESSAGE_LOGGER).info("value %s", values)
    values[0] = "after"
    _close_handlers()
    assert "INFO value ['before']" in log_file.read_text()


def test_the_writer_thread_never_takes_the_services_signals(log_file: Path) -> None:
    import signal
    logsetup.message_line(logging.getLogger(logsetup.MESSAGE_LOGGER), "one")
    writer = next(t for t in threading.enumerate() if t.name == "aclmilter-log-writer")
    with open(f"/proc/self/task/{writer.native_id}/status") as fh:
        blocked = next(int(line.split()[1], 16) for line in fh if line.startswith("SigBlk:"))
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1):
        assert blocked & (1 << (sig - 1))


def test_a_forked_worker_writes_its_own_lines_and_not_its_parents(log_file: Path) -> None:
    msglog = logging.getLogger(logsetup.MESSAGE_LOGGER)
    logsetup.message_line(msglog, "parent before fork")
    pid = os.fork()
    if pid == 0:
        try:
            logsetup.message_line(msglog, f"child {os.getpid()}")
        finally:
            logging.shutdown()
            os._exit(0)
    os.waitpid(pid, 0)
    _close_handlers()
    lines = log_file.read_text().splitlines()
    assert sum("parent before fork" in line for line in lines) == 1
    assert sum(f"child {pid}" in line for line in lines) == 1


def test_lines_beyond_the_limit_are_dropped_and_counted_while_the_log_is_stuck(
        tmp_path: Path) -> None:
    """A log reader that stops reading must not stop mail nor grow memory without bound."""
    release, stuck = threading.Event(), threading.Event()
    written: list[str] = []

    class StuckStream:
        def write(self, text: str) -> None:
            stuck.set()
            release.wait(10)
            written.append(text)

        def flush(self) -> None:
            pass

    logsetup.setup("info", stream=StuckStream(), limits=logsetup.QueueLimits(batch_window=0, max_waiting=5))
    msglog = logging.getLogger(logsetup.MESSAGE_LOGGER)
    try:
        logsetup.message_line(msglog, "first")
        assert stuck.wait(10)                            # the writer is inside its write
        for i in range(20):
            logsetup.message_line(msglog, f"line {i}")   # 5 wait, 15 are dropped
    finally:
        release.set()
        _close_handlers()
        for h in list(logging.getLogger("aclmilter").handlers):
            logging.getLogger("aclmilter").removeHandler(h)
    text = "".join(written)
    assert "INFO first" in text
    assert [f"line {i}" in text for i in range(20)] == [True] * 5 + [False] * 15
    assert "WARNING 15 message log lines dropped: more than 5 were waiting" in text
