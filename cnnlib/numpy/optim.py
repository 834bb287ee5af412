"""Update rules: plain SGD, SGD with momentum, and Adam.

Chapter 7 (training a CNN from scratch) teaches these.

Conventions
-----------
- ``next_w, config = rule(w, dw, config=None)``. ``config`` is a dict of settings and
  optimizer state; missing settings get the defaults listed per rule, and the state
  (velocity, moments, step count) lives in it too. Pass the returned ``config`` to the
  next call for the same parameter, one config per parameter array.
- Nothing is modified in place: ``w`` and the ``config`` passed in stay as they were;
  ``next_w`` and the returned ``config`` (with new state arrays) are new objects.
- Each rule reproduces the PyTorch optimizer of the same name step by step:
  ``torch.optim.SGD`` (``dampening=0``) and ``torch.optim.Adam`` (``amsgrad=False``).
  A misspelt key (``"lr"`` for ``"learning_rate"``) is an error, not a silent default.
- A ``w`` or ``dw`` containing NaN or infinity is an error, not a silent NaN update.
- ``weight_decay`` adds ``weight_decay * w`` to the gradient (L2 regularization, as
  PyTorch's ``weight_decay``; for Adam this is not AdamW's decoupled decay).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._utils import check_array, check_same_dtype, check_same_shape, shape_str

__all__ = ["sgd", "sgd_momentum", "adam"]


def _setup(w, dw, config, defaults: dict, state: tuple[str, ...]) -> dict:
    """Check the arrays and the config; return a new config with defaults filled in."""
    check_array(w, "w")
    check_array(dw, "dw")
    check_same_shape(dw, "dw", w, "w")
    check_same_dtype(dw, "dw", w, "w")
    # One NaN step would make the weights (and Adam's moments) NaN for good, and training
    # would go on printing nan: stop at the step where it first appears.
    for arr, name in ((w, "w"), (dw, "dw")):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinity (shape {shape_str(arr)}); an "
                             f"update would spread it to every later step. Check the backward "
                             f"pass, or lower the learning rate if the loss diverged")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict or None, got {type(config).__name__}")
    unknown = set(config) - set(defaults) - set(state)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; this rule uses "
                         f"{sorted(defaults) + list(state)}")
    config = {**defaults, **config}
    for key, value in config.items():
        if key in defaults and not isinstance(defaults[key], bool):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"config[{key!r}] must be a real number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"config[{key!r}] must be a finite number >= 0, got {value!r}")
    for key in state:
        if key in config and key != "t":
            v = config[key]
            if not isinstance(v, np.ndarray) or v.shape != w.shape:
                raise ValueError(f"config[{key!r}] must be an array of shape {shape_str(w)} like "
                                 f"w, got {shape_str(v)}; was this config made for another "
                                 f"parameter?")
            if v.dtype != w.dtype:
                raise TypeError(f"config[{key!r}] has dtype {v.dtype} but w has dtype {w.dtype}; "
                                f"they must match")
    return config


def _grad(w, dw, config):
    wd = config["weight_decay"]
    return dw + w.dtype.type(wd) * w if wd else dw


def sgd(w, dw, config=None):
    """Vanilla stochastic gradient descent: ``w -= learning_rate * dw``.

    Parameters
    ----------
    w : ndarray, any shape, floating dtype
    dw : ndarray, shape and dtype of ``w``
    config : dict or None
        ``learning_rate`` (default 1e-2), ``weight_decay`` (default 0).

    Returns
    -------
    next_w : ndarray, shape and dtype of ``w``
    config : dict

    Notes
    -----
    Chapter 7 (training a CNN from scratch).
    """
    config = _setup(w, dw, config, {"learning_rate": 1e-2, "weight_decay": 0.0}, ())
    g = _grad(w, dw, config)
    return w - w.dtype.type(config["learning_rate"]) * g, config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum, in PyTorch's form: ``v = momentum * v + dw; w -= learning_rate * v``.

    Parameters
    ----------
    w : ndarray, any shape, floating dtype
    dw : ndarray, shape and dtype of ``w``
    config : dict or None
        ``learning_rate`` (default 1e-2), ``momentum`` (default 0.9),
        ``weight_decay`` (default 0), ``nesterov`` (default False); state
        ``velocity`` (starts at zeros).

    Returns
    -------
    next_w : ndarray, shape and dtype of ``w``
    config : dict

    Notes
    -----
    Chapter 7. The velocity is a running sum of past gradients, each step's weighted by
    ``momentum`` once more, so a consistent direction builds up speed up to
    ``1 / (1 - momentum)`` times the plain step while oscillating components cancel.
    CS231n writes ``v = mu * v - lr * dw; w += v``: with a constant learning rate the
    two forms give the same iterates; PyTorch's keeps working when the learning rate
    changes during training. With ``nesterov=True`` the step uses
    ``dw + momentum * v`` (the gradient plus the look-ahead), as PyTorch does.
    """
    config = _setup(w, dw, config,
                    {"learning_rate": 1e-2, "momentum": 0.9, "weight_decay": 0.0,
                     "nesterov": False}, ("velocity",))
    if not isinstance(config["nesterov"], bool):
        raise TypeError(f"config['nesterov'] must be True or False, got {config['nesterov']!r}")
    dt = w.dtype.type
    g = _grad(w, dw, config)
    v = config.get("velocity", np.zeros_like(w))
    v = dt(config["momentum"]) * v + g
    step = g + dt(config["momentum"]) * v if config["nesterov"] else v
    config["velocity"] = v
    return w - dt(config["learning_rate"]) * step, config


def adam(w, dw, config=None):
    """Adam: a momentum step divided by a running root-mean-square of the gradient.

    Parameters
    ----------
    w : ndarray, any shape, floating dtype
    dw : ndarray, shape and dtype of ``w``
    config : dict or None
        ``learning_rate`` (default 1e-3), ``beta1`` (0.9), ``beta2`` (0.999),
        ``epsilon`` (1e-8), ``weight_decay`` (0); state ``m`` and ``v`` (zeros) and
        the step count ``t`` (0).

    Returns
    -------
    next_w : ndarray, shape and dtype of ``w``
    config : dict

    Notes
    -----
    Chapter 7. With ``t`` counting this step from 1::

        m = beta1 * m + (1 - beta1) * dw          # first moment
        v = beta2 * v + (1 - beta2) * dw**2       # second moment
        m_hat = m / (1 - beta1**t)                # undo the bias of starting at 0
        v_hat = v / (1 - beta2**t)
        w -= learning_rate * m_hat / (sqrt(v_hat) + epsilon)

    The first step moves every weight by about ``learning_rate``, whatever the scale
    of its gradient. ``epsilon`` is added after the square root, as in the Adam paper
    and PyTorch.
    """
    config = _setup(w, dw, config,
                    {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
                     "weight_decay": 0.0}, ("m", "v", "t"))
    for key in ("beta1", "beta2"):
        if not config[key] < 1:
            raise ValueError(f"config[{key!r}] must be in [0, 1), got {config[key]!r}")
    t = config.get("t", 0)
    if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0:
        raise ValueError(f"config['t'] must be an int >= 0 (steps taken), got {t!r}")
    dt = w.dtype.type
    b1, b2 = config["beta1"], config["beta2"]
    g = _grad(w, dw, config)
    t = int(t) + 1
    m = dt(b1) * config.get("m", np.zeros_like(w)) + dt(1 - b1) * g
    v = dt(b2) * config.get("v", np.zeros_like(w)) + dt(1 - b2) * (g * g)
    m_hat = m / dt(1 - b1**t)
    v_hat = v / dt(1 - b2**t)
    config.update(m=m, v=v, t=t)
    step = m_hat / (np.sqrt(v_hat) + dt(config["epsilon"]))
    return w - dt(config["learning_rate"]) * step, config
