"""``m2i tui --run``: the pipeline in a background thread of the dashboard's process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from m2i.errors import M2IError

if TYPE_CHECKING:
    from m2i.config import Settings

log = logging.getLogger(__name__)


class RunnerHost:
    """Runs :func:`m2i.pipeline.run_pipeline` in a thread and stops it gracefully on request.

    Parameters
    ----------
    settings : m2i.config.Settings
        What to run.
    db : str or None
        The database both the runner and the dashboard use.
    """

    def __init__(self, settings: Settings, *, db: str | None) -> None:
        self.settings = settings
        self.db = db
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self._runner: Any = None
        self._stopping = False
        self._lock = threading.RLock()  # re-entered when a signal handler interrupts stop() on the main thread
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, on_done: Callable[[str | None], None]) -> None:
        """Start the pipeline; ``on_done(error)`` is called when it ends, also when it cannot start.

        The pipeline's modules are imported here, on the calling thread, before the runner's thread
        starts (see :func:`tui.data.import_store_modules`); whatever goes wrong after that, the
        thread says so through ``on_done`` and :attr:`error` instead of dying silently.
        """
        try:
            import m2i.pipeline as pipeline
        except Exception as exc:
            self._failed(exc)
            on_done(self.error)
            return

        def target() -> None:
            try:
                self.result = pipeline.run_pipeline(self.settings, db=self.db, handle_signals=False, on_runner=self._got)
            except M2IError as exc:
                self.error = str(exc)
            except Exception as exc:  # the dashboard shows it instead of dying with the thread
                self._failed(exc)
            on_done(self.error)

        self._thread = threading.Thread(target=target, name="m2i-runner", daemon=False)
        self._thread.start()

    def _failed(self, exc: Exception) -> None:
        log.error("the runner stopped with an unexpected error", exc_info=exc)
        self.error = f"The runner stopped with an unexpected error: {exc!r}."

    def _got(self, runner: Any) -> None:
        with self._lock:
            self._runner = runner
            if self._stopping:
                runner.request_stop()

    def stop(self) -> None:
        """Ask the runner to finish the work in flight and claim nothing new."""
        with self._lock:
            self._stopping = True
            if self._runner is not None:
                self._runner.stop_threadsafe()

    def signal(self, signum: int) -> None:
        """A stop signal reached the process: the runner counts it as ``m2i run`` does.

        The first stops claiming and lets the work in flight finish; the same SIGTERM or SIGHUP
        again within half a second counts once; a second one exits at once
        (:meth:`m2i.runner.Runner.request_stop`). Called from the main thread's signal handler.
        """
        with self._lock:
            self._stopping = True  # a runner not created yet is stopped as soon as it is
            runner = self._runner
        if runner is not None:
            runner.stop_from_signal(signum)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; returns whether it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()
