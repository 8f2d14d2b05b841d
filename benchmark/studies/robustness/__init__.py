"""Robustness study: detectors under bad or odd inputs (``probes``), on a run's data (``data``).

The names here are what the study writes and the report reads (importable without running
anything).
"""

CSV_FILE = "robustness.csv"
SETTINGS_FILE = "robustness_settings.json"
# probe -> (title, what it does and when it is ok); the report prints these
PROBES: dict[str, tuple[str, str]] = {
    "nan_inf_pixels": ("NaN/inf pixels", "ID test images with 10 % of their pixels set to NaN, "
                       "+inf or -inf (after normalisation). ok = a finite score for every image."),
    "constant_images": ("constant images", "all-black, mid-grey and all-white images. ok = "
                        "finite scores."),
    "tiny_fit": ("tiny fit (10/class)", "fit on 10 images per class. ok = fits and gives "
                 "finite scores (AUROC shown)."),
    "missing_class": ("class missing from fit", "fit with every image of one class removed. "
                      "ok = fits and gives finite scores (AUROC shown)."),
    "batch_invariance": ("same sample, other batch", "ID + OOD scored in order with one batch "
                         "size, then shuffled with another; changed when any sample's score "
                         "moved by more than rtol x max |score|."),
    "determinism": ("two identical runs", "build, fit and score twice from scratch; changed on "
                    "the same tolerance (the detail says whether the runs were "
                    "bit-identical)."),
}
ERROR_DEFINITION = ("error = the probe raised (message shown) or returned NaN scores / the "
                    "wrong number of them.")
