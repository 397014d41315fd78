"""Every claim of the book in one table: the verdicts of chapters 02-06, recomputed from the run
store (every target and score there is cached, so this trains and attacks nothing new when the
chapters ran before it).
"""
from __future__ import annotations

from dataclasses import dataclass

from miakit.chapters import benchmark, later_attacks, factors, loss_and_likelihood, differential_privacy
from miakit.attacks import blind
from miakit.evidence import claims
from miakit.training import train
from miakit.core.config import Settings

IID_STATEMENT = (f"(ours) the split is IID: attacks that never query the model (blind baselines) are at chance "
                 f"({claims.AT_CHANCE_TEXT}), so the attacks below measure membership, not a difference between "
                 f"the member and nonmember images")


def iid_verdict(study: blind.BlindStudy, figure: str = "notebooks/02_loss_attack#blind") -> claims.Verdict:
    """The split check: every blind baseline at chance (``claims.within``), each on the whole
    split (cross-fitted between its halves, the AUC computed within each half and averaged:
    ``BlindStudy.estimates``), decided at margin ``claims.DELTA`` and shown at ``claims.MARGINS``.

    Simulated at the cpu profile's sizes (100 members and 1000 nonmembers, two halves of 50 +
    500; member and nonmember scores from one distribution, i.e. a truly IID split; 1000
    bootstrap resamples): one blind baseline comes out REPRODUCED in 82% of 900 simulated
    splits at margin 0.1 (``claims.chance_power``: 0.82) and in none at margin 0.05; both
    baselines together in 69% when their scores are independent (more when they are
    correlated, as two attacks on the same images are)."""
    return claims.Verdict("IID split", IID_STATEMENT,
                          tuple(claims.within(f"blind {name} AUC", e, grows=claims.EVERY_MEMBER_SCORED)
                                for name, e in study.estimates().items()), figure)


@dataclass
class Overview:
    """The book's results at a glance: every verdict, and every attack on every family at its
    validation-chosen setting (chapter 06's study, the paper's loss and likelihood attacks
    beside the later ones), for the overview figure."""

    verdicts: list[claims.Verdict]
    attacks: later_attacks.LaterAttacks

    def roc_figure(self):
        """Log-log ROC curves on the test part, one panel per family, every attack at its
        validation-chosen setting (chapter 06's figure)."""
        from miakit.book import plots

        return plots.roc_grid(self.attacks.roc_results())


def overview(settings: Settings, progress_bar: bool = True) -> Overview:
    """The split check, C1 (every family, both attacks), C2, C3, C4, C5 and (ours) L1 (every family,
    every later attack: on chapter 06's benchmark targets for the attacks it runs, on the book's own
    targets for the others, or on the own targets for all when ``bench_members`` = 0), in that
    order, and the attacks behind the overview figure."""
    runs = train.ensure_all(settings, progress_bar)
    lead = loss_and_likelihood.lead_family(runs)
    loss = loss_and_likelihood.loss_attack_studies(runs, progress_bar=progress_bar)
    lik = loss_and_likelihood.likelihood_studies(runs, progress_bar)
    later = later_attacks.later_attacks(runs, progress_bar=progress_bar)
    out = [iid_verdict(blind.blind_study_of_run(runs[lead]))]
    out += loss_and_likelihood.c1_verdicts(loss, lik)
    out += factors.step_study(loss).verdicts()
    out += factors.size_study(settings.for_family(lead), progress_bar).verdicts()
    out.append(factors.length_study(settings.for_family(lead), progress_bar).verdict())
    out += differential_privacy.tradeoff_study(settings, progress_bar).verdicts()
    if benchmark.enabled(settings):  # L1 on targets where attacks separate; the own targets only for the rest
        bench = benchmark.benchmark(settings, progress_bar=progress_bar)
        out += bench.verdicts()
        out += later.verdicts(skip=set(benchmark.attack_names()))
    else:
        out += later.verdicts()
    return Overview(out, later)


def counts(verdicts: list[claims.Verdict]) -> dict[str, int]:
    """How many verdicts came out each way (for the book's prose)."""
    return {str(o).lower(): sum(v.outcome is o for v in verdicts) for o in claims.Outcome}


PROFILE_NOTES = {
    "smoke": "profile smoke: tiny models trained for seconds on a few images; its numbers test the code, not the "
             "paper, and its verdicts mean nothing",
    "cpu": "profile cpu: small models on the digits dataset at its native 8x8 pixels, trained on a 2-core CPU in "
           "minutes; the claims are tested at this scale, not at the paper's",
    "paper": "profile paper: the paper's models and training length on the user's image folder",
}


def profile_note(settings: Settings) -> str:
    """What the numbers of a build under ``settings.profile`` can and cannot show."""
    return PROFILE_NOTES.get(settings.profile, f"profile {settings.profile}")
