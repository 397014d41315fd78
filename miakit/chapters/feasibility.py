"""Fail in seconds, not hours: every chapter's need of images checked against the dataset before
anything trains.

Each chapter draws its images from one dataset of ``N`` images: the split (``n_members`` +
``n_nonmembers``), the size study's member sets (chapter 04: each size + ``n_nonmembers``), the
DP targets (chapter 05: ``dp_n_members`` + ``n_nonmembers``), the reference models (chapter 06:
``n_members`` images from outside the split) and the feature classifier of chapter 05 (trained
on the images outside the DP split); chapter 06's benchmark regime draws from its own dataset
(``bench_dataset``: ``bench_n_members`` + ``bench_n_nonmembers``). Each chapter declares its own draws
(``images_needed`` of its ``contract.Chapter``). ``check`` names every impossible combination at once, with
its parameter and numbers, so a profile that could only fail in chapter 04 fails before chapter
01 starts.
"""
from __future__ import annotations

from miakit.chapters.contract import Need
from miakit.core.config import Settings


class Infeasible(ValueError):
    """The settings ask for more images than the dataset holds."""


def needs(settings: Settings, source: str = "dataset") -> list[Need]:
    """Every draw the chapters make from the dataset the knob ``source`` names (``dataset``, or
    ``bench_dataset`` for the benchmark regime): each chapter's own ``images_needed``
    (``miakit.chapters.book_chapters``)."""
    from miakit.chapters import book_chapters

    return [need for chapter in book_chapters() for need in chapter.images_needed(settings) if need.source == source]


def images_needed(settings: Settings) -> dict[str, int]:
    """chapter -> the most images any of its draws needs."""
    out: dict[str, int] = {}
    for need in needs(settings):
        out[need.chapter] = max(out.get(need.chapter, 0), need.images)
    return out


def check(settings: Settings, n_images: int | None = None, bench_images: int | None = None) -> None:
    """Raise ``Infeasible`` naming every need above ``n_images`` (the dataset's size) or, for the
    benchmark regime, above ``bench_images`` (``bench_dataset``'s size); each is loaded when not
    given (the benchmark's only when the regime is on)."""
    from miakit.core.data import load

    sizes = {"dataset": n_images, "bench_dataset": bench_images}
    names = {"dataset": settings.data.dataset, "bench_dataset": settings.benchmark.bench_dataset}
    short = []
    for source in sizes:
        drawn = needs(settings, source)
        if drawn and sizes[source] is None:
            sizes[source] = len(load(names[source], settings.data.resolution))
        short += [f"{source}={names[source]!r} has {sizes[source]} images, fewer than {n.what} = {n.images} images"
                  for n in drawn if n.images > sizes[source]]
    if short:
        raise Infeasible("; ".join(short) + ". Lower those parameters or use a larger dataset.")
