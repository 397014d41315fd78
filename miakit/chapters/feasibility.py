"""Fail in seconds, not hours: every chapter's need of images checked against the dataset before
anything trains.

Each chapter draws its images from one dataset of ``N`` images: the split (``n_members`` +
``n_nonmembers``), the size study's member sets (chapter 04: each size + ``n_nonmembers``), the
DP targets (chapter 05: ``dp_members`` + ``n_nonmembers``), the reference models (chapter 06:
``n_members`` images from outside the split) and the feature classifier of chapter 05 (trained
on the images outside the DP split); chapter 06's benchmark regime draws from its own dataset
(``bench_dataset``: ``bench_members`` + ``bench_nonmembers``, ``bench_needs``). ``check`` names every impossible combination at once, with
its parameter and numbers, so a profile that could only fail in chapter 04 fails before chapter
01 starts.
"""
from __future__ import annotations

from miakit.core.config import Settings


class Infeasible(ValueError):
    """The settings ask for more images than the dataset holds."""


def needs(settings: Settings) -> list[tuple[str, str, int]]:
    """(chapter, what needs it, images needed) for every draw the chapters make from the dataset."""
    d, f, p, a = settings.data, settings.factors, settings.privacy_study, settings.attack
    out = [("01", f"the split: n_members={d.n_members} + n_nonmembers={d.n_nonmembers}", d.n_members + d.n_nonmembers)]
    out += [("04", f"chapter 04's size study: size_members entry {n} + n_nonmembers={d.n_nonmembers}",
             n + d.n_nonmembers) for n in f.sizes()]
    out.append(("05", f"chapter 05's targets: dp_members={p.dp_members} + n_nonmembers={d.n_nonmembers}, and at least "
                "one image outside them for its feature classifier", p.dp_members + d.n_nonmembers + 1))
    if a.n_references:
        out.append(("06", f"chapter 06's reference models (n_references={a.n_references}): n_members={d.n_members} "
                    f"images outside the split of {d.n_members} + {d.n_nonmembers}", 2 * d.n_members + d.n_nonmembers))
    return out


def bench_needs(settings: Settings) -> list[tuple[str, str, int]]:
    """The benchmark regime's draw from ``bench_dataset`` (none when it is switched off)."""
    b = settings.benchmark
    if b.bench_members == 0:
        return []
    return [("06", f"chapter 06's benchmark split: bench_members={b.bench_members} + "
                   f"bench_nonmembers={b.bench_nonmembers} of bench_dataset={b.bench_dataset!r}",
             b.bench_members + b.bench_nonmembers)]


def images_needed(settings: Settings) -> dict[str, int]:
    """chapter -> the most images any of its draws needs."""
    out: dict[str, int] = {}
    for chapter, _, n in needs(settings):
        out[chapter] = max(out.get(chapter, 0), n)
    return out


def check(settings: Settings, n_images: int | None = None, bench_images: int | None = None) -> None:
    """Raise ``Infeasible`` naming every need above ``n_images`` (the dataset's size) or, for the
    benchmark regime, above ``bench_images`` (``bench_dataset``'s size); each is loaded when not
    given (the benchmark's only when the regime is on)."""
    from miakit.core.data import load

    if n_images is None:
        n_images = len(load(settings.data.dataset, settings.data.resolution))
    short = [f"dataset={settings.data.dataset!r} has {n_images} images, fewer than {what} = {n} images"
             for _, what, n in needs(settings) if n > n_images]
    bench = bench_needs(settings)
    if bench and bench_images is None:
        bench_images = len(load(settings.benchmark.bench_dataset, settings.data.resolution))
    short += [f"bench_dataset={settings.benchmark.bench_dataset!r} has {bench_images} images, fewer than "
              f"{what} = {n} images" for _, what, n in bench if n > bench_images]
    if short:
        raise Infeasible("; ".join(short) + ". Lower those parameters or use a larger dataset.")
