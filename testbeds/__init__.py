"""Test beds for FK steering: models and rewards with known behaviour, for tests, benchmarks and the demo.

Never imported by the nodes or by ``fk_core`` (users of the pack do not need them):

* :mod:`testbeds.toy` — an isotropic Gaussian mixture with its exact denoiser (closed-form tilts).
* :mod:`testbeds.rare` — the rare-attribute bed (a property 0.3% of the model's samples have).
* :mod:`testbeds.digits` — a learned bed: a small denoiser and a digit classifier trained on scikit-learn's
  digits, whose reward on early x0-predictions is noisy as real image rewards are.
* :mod:`testbeds.family` — a family of learned beds: four independently trained denoisers, each as an eps model
  and as a rectified flow, several targets, samplers and step counts (``python -m testbeds.family``).
* :mod:`testbeds.samplers` — the deterministic samplers of the best-of-N baselines (Euler, DPM++ 2M, Heun).
* :mod:`testbeds.demo` — the headless demo (``python -m testbeds.demo``).
"""
