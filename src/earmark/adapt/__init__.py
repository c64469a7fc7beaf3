"""Adaptation used at run time: few-shot heads, classifier packs, calibrated thresholds."""
