"""What each OpenOOD postprocessor needs, as data (importable without OpenOOD).

``SPECS`` says how the adapter runs each supported postprocessor, ``LEFT_OUT`` why the
snapshot's other postprocessors are not offered, ``WORKAROUNDS`` what it takes to run them on a
CPU-only machine. ``adapters.openood.LIBRARY_INFO`` is built from these.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.base import LabelNeed


@dataclass(frozen=True)
class Spec:
    """How one OpenOOD postprocessor is run.

    ``replay``: ``"logits"``/``"features"`` (cached ``[logits | features]`` rows), ``"maps"``
    (cached feature maps) or ``None`` (live model only). ``labels``: ``"every class"`` (fit
    labels must cover 0..C-1), ``"correct every class"`` (and >= 1 correctly classified row per
    class), or ``"unused"``. ``val``: uses ``id_loader_dict['val']``. ``wrapper``: OpenOOD network
    wrapper class. ``pad3``: indexes input channels 0..2 (1-channel inputs are zero-padded).
    ``dim_arg``: a subspace dimension that must be < the feature dimension. ``needs``: an
    optional module that may be a placeholder (then the method raises a DetectorError).
    ``hyperparams``: OpenOOD derives some state only in ``set_hyperparam``, which its evaluator
    calls from the automatic parameter search; the adapter calls it once after ``setup`` with
    these ``postprocessor_args`` values (what the search would do with a one-point sweep).
    ``method``: the canonical method id shared with other libraries (default: the name).
    """

    cls: str
    replay: str | None
    labels: LabelNeed = "unused"
    val: bool = False
    wrapper: str | None = None
    pad3: bool = False
    dim_arg: str | None = None
    note: str = ""
    needs: str | None = None  # an optional module (see adapters.openood.compat)
    hyperparams: tuple[str, ...] = ()  # set_hyperparam(these args) after setup (see AdaScale)
    method: str | None = None  # canonical method id, when it is not the postprocessor's name


SPECS: dict[str, Spec] = {
    "msp": Spec("BasePostprocessor", "logits"),
    "odin": Spec("ODINPostprocessor", None, pad3=True,
                 note="input perturbation: gradients w.r.t. the images"),
    "iodin": Spec("IODINPostprocessor", None, pad3=True,
                  note="input perturbation of the most sensitive pixel"),
    "adascale_a": Spec("AdaScalePostprocessor", None, val=True, wrapper="AdaScaleANet",
                       hyperparams=("percentile", "k1", "k2", "lmbda", "o"),
                       note="input gradients (perturbed-feature shift)"),
    "adascale_l": Spec("AdaScalePostprocessor", None, val=True, wrapper="AdaScaleLNet",
                       hyperparams=("percentile", "k1", "k2", "lmbda", "o"),
                       note="input gradients (perturbed-feature shift)"),
    "ebo": Spec("EBOPostprocessor", "logits", method="energy"),
    "mls": Spec("MaxLogitPostprocessor", "logits", method="maxlogit"),
    "gen": Spec("GENPostprocessor", "logits"),
    "klm": Spec("KLMatchingPostprocessor", "logits", val=True),
    "temp_scaling": Spec("TemperatureScalingPostprocessor", "logits", val=True,
                         method="tempscale"),
    "openmax": Spec("OpenMax", "logits", labels="correct every class", needs="libmr"),
    "mds": Spec("MDSPostprocessor", "features", labels="every class", method="mahalanobis"),
    "rmds": Spec("RMDSPostprocessor", "features", labels="every class", method="rmd"),
    "mds_ensemble": Spec("MDSEnsemblePostprocessor", None, labels="every class", pad3=True,
                         note="per-layer outputs + input perturbation",
                         method="mahalanobis_ensemble"),
    "gram": Spec("GRAMPostprocessor", None, labels="every class",
                 note="Gram matrices of every ReLU/Conv2d output (forward hooks)"),
    "gmm": Spec("GMMPostprocessor", None, note="per-layer outputs (return_feature_list)"),
    "knn": Spec("KNNPostprocessor", "features"),
    "nnguide": Spec("NNGuidePostprocessor", "features"),
    "relation": Spec("RelationPostprocessor", "features"),
    "she": Spec("SHEPostprocessor", "features", labels="correct every class"),
    "vim": Spec("VIMPostprocessor", "features", dim_arg="dim"),
    "residual": Spec("ResidualPostprocessor", "features", val=True, dim_arg="dim"),
    "dice": Spec("DICEPostprocessor", "features"),
    "react": Spec("ReactPostprocessor", "features", val=True, wrapper="ReactNet"),
    "ash": Spec("ASHPostprocessor", "features", wrapper="ASHNet"),
    "scale": Spec("ScalePostprocessor", "features", wrapper="ScaleNet"),
    "rankfeat": Spec("RankFeatPostprocessor", "maps", wrapper="RankFeatNet",
                     note="last-block feature maps; block-3 branch degenerates (see RankFeatNet)"),
    "gradnorm": Spec("GradNormPostprocessor", "features"),
    "fdbd": Spec("fDBDPostprocessor", "features"),
    "nci": Spec("NCIPostprocessor", "features"),
    "vra": Spec("VRAPostprocessor", "features", val=True),
    "cfood": Spec("CFOODPostprocessor", "features"),
}

# What it takes to run OpenOOD's postprocessors here (read by the ease-of-use report):
# "*" applies to every postprocessor.
WORKAROUNDS: dict[str, list[str]] = {
    "*": [
        "device shim: .cuda()/'cuda' mapped to the harness device for the duration of each "
        "OpenOOD call (every postprocessor calls .cuda() unconditionally; fails on CPU otherwise)",
        "placeholder imgaug module when imgaug is missing or broken (numpy >= 2), so "
        "openood.postprocessors imports",
        "own name -> class map and local YAML configs (the evaluation API downloads configs)",
        "ID dataset name and class count registered (several postprocessors KeyError otherwise)",
    ],
    "openmax": ["libmr built with pip --no-build-isolation (build deps undeclared)"],
    "vim": ["dim clamped below the feature dimension (all-NaN scores otherwise)"],
    "residual": ["dim clamped below the feature dimension"],
    "odin": ["1-channel inputs padded to the 3 channels OpenOOD indexes"],
    "iodin": ["1-channel inputs padded to the 3 channels OpenOOD indexes"],
    "mds_ensemble": ["1-channel inputs padded to the 3 channels OpenOOD indexes"],
    "adascale_a": ["set_hyperparam called after setup (normally run by OpenOOD's OOD search)"],
    "adascale_l": ["set_hyperparam called after setup (normally run by OpenOOD's OOD search)"],
}

LEFT_OUT: dict[str, str] = {
    "cider": "needs a network trained with the CIDER contrastive head",
    "npos": "needs a network trained with NPOS (outlier synthesis) head",
    "godin": "needs a GODIN-trained network (dividend/divisor heads)",
    "conf_branch": "needs a network trained with a confidence branch",
    "rotpred": "needs a network trained with a rotation-prediction head",
    "mos": "needs a network trained with grouped softmax (MOS)",
    "t2fnorm": "needs a T2FNorm-trained network (forward_ood_inference)",
    "reweightood": "needs a ReweightOOD-trained network",
    "rts": "needs an RTS-trained network (variance head)",
    "dropout": "needs a network with OpenOOD's dropout forward (forward_with_dropout)",
    "mcd": "needs a two-head MCD-trained network",
    "opengan": "trains a GAN discriminator on OOD/ID features",
    "ssd": "self-supervised detector: needs its own contrastive training",
    "ensemble": "needs several independently trained checkpoints",
    "mcm": "needs a CLIP vision-language model (text prompts)",
    "grood": "fits on OOD validation data (use_val_ood) and its config is a .yaml file, which "
    "openood.utils.Config refuses",
    "cutpaste": "industrial anomaly detection: needs its own trained network",
    "draem": "industrial anomaly detection: needs its own trained network",
    "dsvdd": "industrial anomaly detection: needs its own trained network",
    "patchcore": "industrial anomaly detection: needs a patch feature extractor",
    "rd4ad": "industrial anomaly detection: needs a trained decoder",
}
