"""`edge-signs teach MODEL --camera/--picamera/--video ... --serve [HOST:]PORT --out FILE`: teaching from a browser.

For a headless Pi: `live --serve`'s page (serve.py) shows the camera with the sign
the head sees now, and, because the status says teaching is on, a button per sign
and "done". A button teaches the frame in hand when its POST arrives as the key does
in the window (teach_window.py: features stored, head refitted, crop kept with
--save); "done" ends the run and writes the file as q does, but is refused in one
line (400) while a sign has fewer than ``--min-per-sign`` frames, so a click too
early loses nothing.

    POST /teach       {"label": "3"}  -> the frames taught per sign, as /status's "teach"
    POST /teach/done  {}              -> the file that will be written

The routes are the server's (``LiveServer.add_route``): the same token and loopback
checks as every other request, JSON bodies only. Their handlers run in the server's
threads; what they ask of the teacher runs in the loop's thread (``LoopCalls``), so
the head, the counts and the crops are only ever touched by one thread.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edge_signs import config
from edge_signs.edge.crop_writer import check_out
from edge_signs.edge.display import Canvas
from edge_signs.edge.head import check_frames
from edge_signs.edge.loop import LoopFrame
from edge_signs.edge.results import FrameResult
from edge_signs.edge.serve import HttpError, LiveServer, Request, parse_serve
from edge_signs.edge.sources import SourceOptions
from edge_signs.edge.teach import TeachOptions, check_teach_paths
from edge_signs.edge.teach_live import run_teaching
from edge_signs.edge.teach_window import TaughtWithCrops, Teaching, WindowTeachResult, open_teaching, render_teaching, write_taught
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.preprocess import Roi

TEACH_ROUTE = "/teach"
DONE_ROUTE = "/teach/done"
DONE = "done from the page"

LoopCall = Callable[[LoopFrame, np.ndarray], Any]  # (the frame in hand, its features) -> a route's answer


class LoopCalls:
    """Work the server's threads hand to the loop's thread, each answered once the loop's next frame has run it."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False

    def call(self, fn: LoopCall, timeout: float = config.TEACH_CLICK_WAIT_S) -> Any:
        """``fn``'s answer (its errors raised here), from a server thread; a 503 when the run ends first or no frame comes."""
        future: Future = Future()
        with self._lock:  # a call queued after close would wait out its timeout for nothing
            if self._closed:
                raise HttpError(503, "the teaching run has ended")
            self._queue.put((fn, future))
        try:
            return future.result(timeout)
        except FutureTimeout:  # an alias of the builtin TimeoutError only from Python 3.11
            if future.cancel():
                raise HttpError(503, f"no frame came from the source in {timeout:.0f} s; try again") from None
            return future.result()  # the loop took it just now: its answer comes
        except CancelledError:
            raise HttpError(503, "the teaching run has ended") from None

    def run_pending(self, f: LoopFrame, features: np.ndarray) -> list[tuple[Future, Any]]:
        """In the loop's thread: every call queued since the last frame, on this frame.

        Their answers are returned, for ``answer`` to send once the frame's status shows what they
        did: a page that asks for the status as soon as its click is answered sees the new counts.
        """
        answers: list[tuple[Future, Any]] = []
        while True:
            try:
                fn, future = self._queue.get_nowait()
            except queue.Empty:
                return answers
            if not future.set_running_or_notify_cancel():
                continue
            try:
                answers.append((future, fn(f, features)))
            except BaseException as exc:  # the server thread waiting on it raises it; Ctrl-C still ends the loop
                future.set_exception(exc)
                if not isinstance(exc, Exception):
                    self.answer(answers)
                    raise

    @staticmethod
    def answer(answers: list[tuple[Future, Any]]) -> None:
        for future, result in answers:
            future.set_result(result)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                self._queue.get_nowait()[1].cancel()
            except queue.Empty:
                return


def label_of(body: Any) -> int:
    """The sign a POST /teach names: {"label": "3"} (or 3); one line naming what was expected otherwise."""
    label = body.get("label") if isinstance(body, dict) else None
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)
    if not isinstance(label, str) or label not in config.LABELS:
        got = json.dumps(body)
        raise EdgeSignsError(f"POST {TEACH_ROUTE}: expected a JSON body {{\"label\": one of {', '.join(config.LABELS)}}}, "
                             f"got {got if len(got) <= 60 else got[:57] + '...'}")
    return config.LABELS.index(label)


class TaughtByButtons(TaughtWithCrops):
    """--serve: the page shows the frame and the sign the head sees now; its buttons teach the frame in hand, "done" ends it.

    ``on_frame`` (a caller's hook) is called after each frame; raising KeyboardInterrupt
    there ends the run as Ctrl-C does (abandoned: nothing written).
    """

    name = "--serve"

    def __init__(self, teaching: Teaching, roi: Roi, server: LiveServer, out: Path, on_frame: Optional[Callable[[LoopFrame], None]] = None):
        super().__init__(teaching, roi)
        self.server, self.out, self.hook = server, out, on_frame
        self.canvas = Canvas(roi)
        self.calls = LoopCalls()
        self._done = False
        self._answering: Optional[threading.Thread] = None  # the server thread answering the accepted "done"
        server.add_route("POST", TEACH_ROUTE, self._teach_route)
        server.add_route("POST", DONE_ROUTE, self._done_route)

    def on_frame(self, f: LoopFrame) -> Optional[str]:
        t0 = time.perf_counter()
        feats, shown = self.classify(f)
        ms = (time.perf_counter() - t0) * 1e3
        answers = self.calls.run_pending(f, feats)  # the clicks since the last frame teach this one, in this thread
        try:
            if self.server.wants_frame():
                self.server.publish_frame(render_teaching(self.canvas, f.frame, shown, self.teacher))
            k = int(np.argmax(shown))
            label, p = config.LABELS[k], float(shown[k])
            # live's status (the page reads it) with the head's own top sign: teaching neither smooths nor thresholds.
            result = FrameResult(frame=f.index, label=label, index=k, smoothed_confidence=p, raw_label=label, raw_index=k, confidence=p, inference_ms=ms)
            status = result.as_dict(config.LABELS, with_truth=True)
            status.update(fps=round(f.fps, 2), events=[], teach=self.state())
            self.server.publish_status(status)
        finally:
            self.calls.answer(answers)
        if self.hook is not None:
            self.hook(f)
        return DONE if self._done else None

    def state(self) -> dict:
        """What the page shows of the teaching: frames per sign, the fewest "done" takes, whose head predicts, crops kept."""
        return {"counts": self.teacher.counts(), "min_per_sign": self.teacher.fit.min_per_sign,
                "head": "taught" if self.teacher.head is not None else "own", "done": self._done,
                "saved": sum(self.writer.saved.values()) if self.writer is not None else None}

    def _teach_route(self, request: Request) -> dict:
        label = label_of(request.body)  # a bad one is a 400 before the loop is asked anything

        def teach(f: LoopFrame, feats: np.ndarray) -> dict:
            if self._done:
                raise HttpError(409, "teaching is done: the file is being written")
            self.teach(f, feats, label)
            return {"taught": config.LABELS[label], "frame": f.index, "teach": self.state()}

        return self.calls.call(teach)

    def _done_route(self, request: Request) -> dict:
        answering = threading.current_thread()

        def finish(f: LoopFrame, feats: np.ndarray) -> dict:
            counts = self.teacher.counts()
            check_frames(np.repeat(np.arange(config.NUM_CLASSES), counts), self.teacher.fit.min_per_sign)
            self._done, self._answering = True, answering
            return {"done": True, "out": str(self.out), "teach": self.state()}

        return self.calls.call(finish)

    def wait_answered(self, timeout: float = config.TEACH_ANSWER_WAIT_S) -> None:
        """Until "done"'s answer has been sent (its thread ended): closing the server first would cut it off."""
        if self._answering is not None:
            self._answering.join(timeout)

    def close(self, completed: bool) -> None:
        try:
            self.calls.close()  # clicks still waiting are answered 503
        finally:
            super().close(completed)


def teach_served(model: str | Path, source_options: SourceOptions, out: str | Path, options: TeachOptions = TeachOptions(), *,
                 serve: str, token: Optional[str] = None, roi: Roi = Roi(), save: Optional[Path] = None, log: Log = log_stderr,
                 on_server: Optional[Callable[[LiveServer], None]] = None,
                 on_frame: Optional[Callable[[LoopFrame], None]] = None) -> WindowTeachResult:
    """Teach from a camera or video with the buttons of a browser page (see the module's notes).

    ``on_server`` gets the bound server before the source opens (its ``port``, with port 0);
    ``on_frame`` is called after every frame (TaughtByButtons).
    """
    model = Path(model)
    out = check_teach_paths(model, out)
    save = check_out(save) if save is not None else None
    with contextlib.ExitStack() as stack:
        # Bound before the camera opens: a port in use is a one-line error, not a camera left open.
        server = stack.enter_context(LiveServer(parse_serve(serve), token, log=log))
        if on_server is not None:
            on_server(server)
        teaching = open_teaching(model, source_options, options, roi, save, log)
        try:
            output = TaughtByButtons(teaching, roi, server, out, on_frame)
            server.set_info(model=teaching.clf.describe(), source=teaching.source.name, labels=list(config.LABELS))
            server.start()
        except BaseException:
            _close_unstarted(teaching)
            raise
        run = run_teaching(teaching.source, output)
        result = write_taught(teaching, run, out, save, options.seed)
        output.wait_answered()
    return result


def _close_unstarted(teaching: Teaching) -> None:
    """What open_teaching opened, when the run never started."""
    teaching.source.close()
    if teaching.writer is not None:
        teaching.writer.close()
