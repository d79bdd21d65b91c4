"""Shared storage: where uploads, an analysis's working folders and its results live.

One directory that the API and every worker see (a ReadWriteMany volume on Kubernetes). All
layout knowledge is here, behind one small interface, so that an object store can take its
place later: the API and the workers ask it for paths and archives, never build them.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from worker.atomic import temporary_sibling


def database_url(configured: str | None, data_dir: Path) -> str:
    """The configured database, or by default a SQLite file in the data dir."""
    return configured or f"sqlite:///{data_dir / 'api.sqlite3'}"


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    @property
    def uploads(self) -> Path:
        return self.root / "files"

    def upload(self, stored_name: str) -> Path:
        return self.uploads / stored_name

    def analysis(self, analysis_id: int) -> Path:
        return self.root / "analyses" / str(analysis_id)

    def inputs_work(self, analysis_id: int) -> Path:
        return self.analysis(analysis_id) / "inputs-work"

    def run_dir(self, analysis_id: int) -> Path:
        return self.analysis(analysis_id) / "run"

    def input_archive(self, analysis_id: int) -> Path:
        return self.analysis(analysis_id) / "input.tar.gz"

    def output_archive(self, analysis_id: int) -> Path:
        return self.analysis(analysis_id) / "output.tar.gz"

    def archive(self, folder: Path, target: Path) -> Path:
        """`folder` as a tar.gz at `target`, written aside and renamed into place."""
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = temporary_sibling(target)
        with tarfile.open(temporary, "w:gz") as tar:
            for path in sorted(folder.rglob("*")):
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
        temporary.replace(target)
        return target

    def remove_analysis(self, analysis_id: int) -> None:
        shutil.rmtree(self.analysis(analysis_id), ignore_errors=True)

    def remove(self, path: Path) -> None:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
