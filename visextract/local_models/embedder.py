"""Sentence embeddings with the bundled all-MiniLM-L6-v2 (384 dimensions, offline).

The model is sentence-transformers' all-MiniLM-L6-v2: a BERT encoder, mean pooling over tokens,
L2 normalisation. It runs here through transformers directly, which loads in about a second instead
of the three that importing sentence-transformers takes; a test checks both give the same vectors.

`embed_texts` runs it in this process (queries). Extraction runs it in a child process instead
(`EmbedderProcess`): loading it imports torch and transformers, seconds of Python that would hold the
GIL and the import lock while the run's event loop is sending LLM requests.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import numpy as np

from visextract.local_models.bundled import MINILM_ID, minilm_path
from visextract.local_models.cache import cached_model

EMBEDDING_MODEL = MINILM_ID
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length

_lock = threading.Lock()


def _encoder() -> tuple[Any, Any]:
    def load() -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        folder = str(minilm_path())
        return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    return cached_model("minilm", load, exclusive=True)


def embed_texts(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text."""
    import torch

    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    tokenizer, model = _encoder()
    chunks = []
    with _lock, torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            tokens = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
    return np.vstack(chunks).astype(np.float32)


class EmbedderProcess:
    """all-MiniLM-L6-v2 in a child process: `embed(texts)` sends texts down a pipe and reads vectors back.

        embedder = EmbedderProcess(threads=1)
        embedder.start()                      # the child imports torch and loads the model
        vectors = embedder.embed(["a red car", "a cat"])   # float32, shape (2, 384), unit length
        embedder.close()

    The child's imports and computation never touch this process's GIL: here a call only writes and reads
    a pipe. The child exits when this process closes it, or dies (its stdin ends). One call at a time.
    """

    def __init__(self, threads: int = 1) -> None:
        self.threads = max(1, threads)
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._failure: str | None = None
        self._lock = threading.Lock()

    @property
    def failed(self) -> bool:
        return self._failure is not None

    @property
    def pid(self) -> int | None:
        """The child's process id, once started."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child and wait until its model is loaded (no-op once started). Raises RuntimeError."""
        with self._lock:
            self._start()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text (as `embed_texts`)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._lock:
            process = self._start()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(json.dumps({"texts": list(texts)}).encode() + b"\n")
                process.stdin.flush()
                reply = self._reply(process)
                if "error" in reply:  # this request only (the child goes on)
                    raise RuntimeError(f"search embeddings: {reply['error']}")
                data = process.stdout.read(reply["rows"] * DIMENSIONS * 4)
            except (OSError, ValueError, KeyError) as exc:
                self._fail(f"the embedding process stopped ({type(exc).__name__})")
            if len(data) != len(texts) * DIMENSIONS * 4:
                self._fail("the embedding process stopped mid-answer")
            return np.frombuffer(data, dtype=np.float32).reshape(len(texts), DIMENSIONS)

    def close(self) -> None:
        """Let the child exit (killed if it does not within 2 s: it may still be loading; nothing is lost)."""
        with self._lock:
            process, self._process = self._process, None
            if process is None:
                return
            assert process.stdin is not None
            try:
                process.stdin.close()
                process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
            finally:
                for stream in (process.stdout, self._stderr):
                    if stream is not None:
                        stream.close()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._failure is not None:
            raise RuntimeError(self._failure)
        if self._process is not None:
            return self._process
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from visextract.local_models.embedder import serve; serve()", str(self.threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        try:
            reply = self._reply(self._process)
        except (OSError, ValueError) as exc:
            self._fail(f"the embedding process did not start ({type(exc).__name__})")
        if "error" in reply:
            self._fail(reply["error"])
        return self._process

    def _reply(self, process: subprocess.Popen[bytes]) -> dict[str, Any]:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            self._fail("the embedding process exited")
        return json.loads(line)

    def _fail(self, reason: str) -> NoReturn:
        """Remember why the child cannot embed (later calls fail at once), stop it, raise."""
        if self._stderr is not None:
            self._stderr.seek(0)
            last = self._stderr.read().decode(errors="replace").strip().splitlines()[-1:]
            reason += f": {last[0]}" if last and last[0] not in reason else ""
        self._failure = f"search embeddings: {reason}"
        if self._process is not None:
            self._process.kill()
        raise RuntimeError(self._failure)


_processes: dict[int, EmbedderProcess] = {}
_processes_lock = threading.Lock()


def shared_embedder_process(threads: int = 1) -> EmbedderProcess:
    """This process's embedding child for `threads` threads, shared by every run (started once, on first
    use; stopped at exit). One that failed is replaced, so a later run tries again."""
    with _processes_lock:
        process = _processes.get(threads)
        if process is None or process.failed:
            process = _processes[threads] = EmbedderProcess(threads)
            atexit.register(process.close)
        return process


def serve() -> None:
    """The child's side of `EmbedderProcess`: load the model, say so, answer requests until stdin ends.

    Replies go to a private copy of stdout; anything else the libraries print goes to stderr.
    """
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def send(header: dict[str, Any], data: bytes = b"") -> None:
        replies.write(json.dumps(header).encode() + b"\n" + data)
        replies.flush()

    try:
        import torch

        torch.set_num_threads(int(sys.argv[1]))
        _encoder()
    except Exception as exc:
        send({"error": f"cannot load {EMBEDDING_MODEL}: {type(exc).__name__}: {exc}".splitlines()[0]})
        return
    send({"ready": True})
    for line in sys.stdin.buffer:
        try:
            vectors = embed_texts(json.loads(line)["texts"])
        except Exception as exc:
            send({"error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
        else:
            send({"rows": len(vectors)}, np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
