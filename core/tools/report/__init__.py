"""Figures and tables from stored results only: learning curves with mean ± std bands over seeds, tables of
mean ± std at each budget with the area under the budget curve (AUBC), and paired comparisons of methods.

Every method of an experiment starts each seed from the same initial labeled set and the same first model
(core/lib/loop.py), so two methods are compared seed by seed: at every budget a paired test across seeds (a paired
t-test by default, Wilcoxon's signed-rank test as an option) and the mean difference with its confidence
interval; the pairwise penalty matrix of Ash et al. (BADGE, ICLR 2020, Fig. 4); the improvement over random
per budget with confidence bands (the form of TA-VAAL's Fig. 3); and, over several experiments, one table of
AUBC and final accuracy per method with the mark against random. Nothing is marked on fewer than MIN_SEEDS
paired seeds.

rows.py: the row checks and the rows grouped into curves; statistics.py: the curves, paired tests, confidence bands,
AUBC and penalty matrix; tables.py: markdown; figures.py: matplotlib, through the one `pyplot()`; summary.py: the
summary over experiments and `write_report`, which writes it all. The names other modules use are imported here.
"""
from core.tools.report.figures import pyplot
from core.tools.report.rows import REPORT_FIELDS, check_report_fields, group_curves, load_rows
from core.tools.report.statistics import (MIN_SEEDS, TOO_FEW_SEEDS, Comparison, Curve, Stats, budget_comparisons,
                                          compare_seeds, penalty_matrix)
from core.tools.report.summary import collect, summed_penalty, summed_penalty_table, write_report
from core.tools.report.tables import pairwise_table

__all__ = ["MIN_SEEDS", "REPORT_FIELDS", "TOO_FEW_SEEDS", "Comparison", "Curve", "Stats", "budget_comparisons",
           "check_report_fields", "collect", "compare_seeds", "group_curves", "load_rows", "pairwise_table",
           "penalty_matrix", "pyplot", "summed_penalty", "summed_penalty_table", "write_report"]
