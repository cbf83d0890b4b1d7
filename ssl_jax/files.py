"""The one path layer: every file a run reads or writes goes through :mod:`etils.epath`,
the layer orbax writes its checkpoints through, so a workdir is a local folder or a URL
such as ``gs://BUCKET/PATH`` alike. For gs:// epath uses TensorFlow's file system when
TensorFlow is installed (as here), else gcsfs; orbax writes the arrays with tensorstore's
own GCS driver. TensorBoard events go through tf.summary, which reads the same URLs.

GCS has neither folders nor appends, and an object is replaced whole or not at all: files
are written whole (:func:`write_text`), never appended to, and a local file is written
to a temporary name and renamed, so that a kill mid-write leaves the previous version.
"""

from __future__ import annotations

import os

from etils import epath

Path = epath.Path


def is_url(name: str | os.PathLike) -> bool:
  """True for ``gs://...`` and other ``scheme://`` paths."""
  return '://' in os.fspath(name)


def absolute(name: str | os.PathLike) -> epath.Path:
  """``name`` as an absolute path: a relative local path from the working directory, a
  URL as it is (``os.path.abspath`` would turn ``gs://b/w`` into ``<cwd>/gs:/b/w``)."""
  path = epath.Path(name)
  return path if is_url(name) else path.absolute()


def write_text(path: str | os.PathLike, text: str) -> None:
  """Writes ``text`` to ``path`` whole: locally to a temporary name renamed at the end (a
  kill mid-write keeps the old file); a URL in one upload, which GCS makes atomic."""
  write_bytes(path, text.encode())


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` whole, as :func:`write_text` does."""
  path = epath.Path(path)
  if is_url(path):
    path.write_bytes(data)
    return
  temporary = path.with_name(path.name + '.tmp')
  temporary.write_bytes(data)
  temporary.replace(path)


def read_text(path: str | os.PathLike) -> str | None:
  """The text of ``path``, or None if it does not exist."""
  path = epath.Path(path)
  return path.read_text() if path.exists() else None


def append_text(path: str | os.PathLike, text: str) -> None:
  """Adds ``text`` at the end of ``path`` by rewriting it (GCS cannot append); for small
  files written rarely (error.log)."""
  write_text(path, (read_text(path) or '') + text)
