"""One module per chapter of the book (and the overview, budget and feasibility that loop over them).

Every chapter declares a ``contract.Chapter`` (its trainings, its draws of images, its verdicts and
the notebooks it runs after); ``book_chapters()`` lists them in book order, and the budget
(``budget.trainings``), the feasibility check (``feasibility.needs``), the book's build order
(``miakit.book.build``) and the claims page (``overview.overview``) loop over that list. A new
chapter, or a new study in one, is declared in its own module and nowhere else.
"""
from __future__ import annotations


def book_chapters() -> tuple:
    """Every chapter's ``contract.Chapter``, in book order (imported here, on first use: the
    chapters need torch, their callers' command lines may not)."""
    from miakit.chapters import defenses, differential_privacy, factors, later_attacks, loss_and_likelihood, targets

    return (targets.CHAPTER, loss_and_likelihood.LOSS_CHAPTER, loss_and_likelihood.LIKELIHOOD_CHAPTER,
            factors.CHAPTER, differential_privacy.CHAPTER, later_attacks.CHAPTER, defenses.CHAPTER)
