"""Assignment 5 (transfer learning and fine-tuning): its graded functions, described once.

The three set-up functions take a torch module, which cannot cross between the grading
process and the student's kernel, so each has an *adapter*: in the kernel it builds the
course's small ResNet from plain numbers (depth, width, classes, which parameters start
frozen, a seed), calls the student's function on it under the grader's watch, and
returns plain data: the ``requires_grad`` flag of every parameter, the head's shape, the
learning rate of every parameter's optimizer group. The reference side runs the same
adapter in the grading process on :mod:`cnnlib.torch.transfer`'s functions.

``predict`` is the notebook's trained classifier; a hidden cell calls it with
``GRADER.run`` on new images of the target task that it draws in the grading process
(:func:`cnnlib.grading.a5_task.target_images`) and computes the accuracy itself. The
notebook gets the few labelled images it may train on as arrays (:func:`target_data`),
never the generator.

Machinery only: the seeds, the configurations and the accuracy thresholds live in the
hidden test cells of ``solutions/a5-transfer``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .sandbox import DenyList
from .specs import FunctionSpec, Hint, Mistake

ASSIGNMENT = "a5-transfer"

# Seconds the grader gives one student cell (spec module convention, see specs.py). The
# kernel's own guard stops a cell at three quarters of it, 60 s: the limit the notebook
# states, enough for the comparison of section 5 (nine small trainings on one thread).
CELL_TIMEOUT = 80.0

IMAGE_SIZE = 16
SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
# What the set-up functions may not call: the library's own versions of them, and any
# model zoo. torch itself is the point of the assignment.
_DENIED = ("cnnlib.torch.transfer", "cnnlib.torch.train", "torchvision", "timm")
#: The starting states a configuration can ask for (which parameters are frozen).
STATES = ("trainable", "frozen", "head_frozen", "backbone_frozen")


def prepare():
    """Before grading: the course's pre-trained small ResNet in the weight cache (trained
    there once if missing; the notebook's kernel sees the cache read-only and never trains
    it). ``tools/grade_samples.py`` calls it; an instructor runs
    ``python -m cnnlib.torch.pretrain`` once."""
    from cnnlib.torch.pretrain import ensure_pretrained

    return ensure_pretrained(progress=False)


# --------------------------------------------------------------------------- the target task

#: The assignment's images of the target task, shipped as arrays: the only labelled target
#: images a notebook may train on (x_train; x_val to choose settings, x_test to measure).
#: Written by ``tools/a5_data.py``; the grader draws its own, new images
#: (:mod:`cnnlib.grading.a5_task`, which no notebook may use).
TARGET_DATA = Path(__file__).with_name("a5_target.npz")
TARGET_ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def target_data():
    """The assignment's images of the target task: ``{name: array}`` for the names in
    :data:`TARGET_ARRAYS`.

    ``x_*`` are ``(n, 1, 16, 16)`` float32 arrays in [0, 1], ``y_*`` the ``(n,)`` int64
    labels (indices into :data:`SHAPE_CLASSES`): 20 training images (five per class), 20
    validation images and 400 test images.
    """
    with np.load(TARGET_DATA, allow_pickle=False) as npz:
        return {name: npz[name].copy() for name in TARGET_ARRAYS}


# --------------------------------------------------------------------------- the model

def build_model(depth, width, classes, state, seed):
    """The course's small ResNet with seeded random weights, some parameters frozen.

    ``state``: ``"trainable"`` (nothing frozen), ``"frozen"`` (everything),
    ``"head_frozen"`` (only ``fc``) or ``"backbone_frozen"`` (everything but ``fc``), or
    its index in :data:`STATES` (0 to 3), which is how it crosses to the kernel: the
    in-kernel grader sends numbers and arrays only.
    """
    import torch

    from cnnlib.torch.models import small_resnet

    if isinstance(state, int) and not isinstance(state, bool) and 0 <= state < len(STATES):
        state = STATES[state]
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES} or its index, got {state!r}")
    torch.manual_seed(int(seed))
    model = small_resnet(depth=int(depth), width=int(width), num_classes=int(classes))
    for name, p in model.named_parameters():
        head = name.startswith("fc.")
        frozen = (state == "frozen" or (state == "head_frozen" and head)
                  or (state == "backbone_frozen" and not head))
        p.requires_grad_(not frozen)
    return model


def _plain_watch(f, *args, **kwargs):
    return f(*args, **kwargs)


def _model_inputs(rng, c):
    return (int(c.get("depth", 8)), int(c.get("width", 16)), int(c.get("classes", 10)),
            STATES.index(c.get("state", "trainable")), int(rng.integers(0, 2**31 - 1)))


def _describe_model(c):
    return (f"small ResNet (depth {c.get('depth', 8)}, width {c.get('width', 16)}, "
            f"{c.get('classes', 10)} classes), {c.get('state', 'trainable').replace('_', ' ')}")


# --------------------------------------------------------------------------- freeze_backbone

def freeze_adapter(student, watch, depth, width, classes, state, seed):
    """``requires_grad`` of every parameter (``named_parameters`` order, 1 = trainable)
    after ``student(model)``."""
    model = build_model(depth, width, classes, state, seed)
    watch(student, model)
    return np.array([float(p.requires_grad) for p in model.parameters()])  # (n_params,)


def _ref_freeze(model):
    from cnnlib.torch import transfer

    transfer.freeze(model)
    transfer.unfreeze(model, "fc")
    return model


def _freeze_all(model):
    for p in model.parameters():
        p.requires_grad = False


def _freeze_convs_only(model):
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.requires_grad = False
    model.fc.requires_grad_(True)


def _freeze_module_attribute(model):
    for name, child in model.named_children():
        if name != "fc":
            child.requires_grad = False  # an attribute of the module, not of its parameters


def _freeze_stem_only(model):
    for p in model.conv1.parameters():
        p.requires_grad = False
    model.fc.requires_grad_(True)


def _freeze_via(impl):
    return lambda lib, args: freeze_adapter(impl, _plain_watch, *args)


FREEZE_BACKBONE = FunctionSpec(
    name="freeze_backbone",
    signature="freeze_backbone(model)",
    returns="array",
    adapter=freeze_adapter,
    inputs=_model_inputs,
    reference=lambda lib, args: freeze_adapter(_ref_freeze, _plain_watch, *args),
    describe=_describe_model,
    deny=lambda: DenyList(modules=_DENIED, reason="set requires_grad on the parameters "
                                                  "yourself"),
    mistakes=(
        Mistake("the head ends up frozen: feature extraction trains the head, so model.fc's "
                "parameters must be trainable after freeze_backbone (requires_grad = True), "
                "also when they were frozen before", _freeze_via(_freeze_all)),
        Mistake("nothing was frozen: setting requires_grad on a module is a plain attribute "
                "that its parameters never see; set it on each parameter (or call "
                "module.requires_grad_(False))", _freeze_via(_freeze_module_attribute)),
        Mistake("only the convolution weights are frozen: the batch norms' weights and biases "
                "belong to the backbone too", _freeze_via(_freeze_convs_only)),
        Mistake("only the first layer is frozen: the backbone is every layer before the head",
                _freeze_via(_freeze_stem_only)),
    ),
    hints=(Hint("it fails only when the head starts frozen: set requires_grad = True on the "
                "head's parameters, do not only leave them alone",
                lambda c: c.get("state") in ("frozen", "head_frozen")),),
)


# --------------------------------------------------------------------------- replace_head

def head_adapter(student, watch, depth, width, classes, state, seed, num_classes):
    """What ``student(model, num_classes)`` did to the model, as
    ``(outputs, head shape, head trainable, backbone kept)``:

    - the number of scores the model now gives for each image (-1 when it no longer runs
      on a batch of images);
    - ``(out_features, in_features)`` of the model's last linear layer, ``(0, 0)`` if it
      has none;
    - 1 if every parameter of that layer is trainable;
    - 1 if every other parameter the model had is unchanged and still in place.
    """
    import torch

    model = build_model(depth, width, classes, state, seed)
    before = {name: p.detach().clone() for name, p in model.named_parameters()
              if not name.startswith("fc.")}
    watch(student, model, num_classes)
    model.eval()
    try:
        with torch.no_grad():
            scores = model(torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE))  # (2, num_classes)
        outputs = int(scores.shape[-1]) if scores.ndim == 2 else -1
    except RuntimeError:  # the new head does not fit the backbone's features
        outputs = -1
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = linears[-1] if linears else None
    shape = np.array(head.weight.shape if head is not None else (0, 0), dtype=np.float64)
    trainable = int(head is not None and all(p.requires_grad for p in head.parameters()))
    after = dict(model.named_parameters())
    kept = int(all(name in after and torch.equal(after[name], value)
                   for name, value in before.items()))
    return outputs, shape, trainable, kept


def _ref_head(model, num_classes):
    from cnnlib.torch import transfer

    transfer.replace_head(model, num_classes)
    return model


def _head_fixed_inputs(model, num_classes):
    import torch

    model.fc = torch.nn.Linear(64, num_classes)
    return model


def _head_not_assigned(model, num_classes):
    import torch

    return torch.nn.Linear(model.fc.in_features, num_classes)


def _head_stacked(model, num_classes):
    import torch

    model.fc = torch.nn.Sequential(model.fc, torch.nn.Linear(model.fc.out_features,
                                                             num_classes))
    return model


def _head_frozen_like_old(model, num_classes):
    import torch

    trainable = model.fc.weight.requires_grad
    model.fc = torch.nn.Linear(model.fc.in_features, num_classes)
    model.fc.requires_grad_(trainable)
    return model


def _head_via(impl):
    def variant(lib, args):
        depth, width, *_ = args
        if impl is _head_fixed_inputs and 4 * width == 64:
            raise ValueError("applies when the head does not have 64 inputs")
        return head_adapter(impl, _plain_watch, *args)
    return variant


REPLACE_HEAD = FunctionSpec(
    name="replace_head",
    signature="replace_head(model, num_classes)",
    returns=("int", "array", "int", "int"),
    parts=("number of scores per image", "shape of the last linear layer",
           "head trainable", "rest of the model unchanged"),
    adapter=head_adapter,
    inputs=lambda rng, c: (*_model_inputs(rng, c), int(c["num_classes"])),
    reference=lambda lib, args: head_adapter(_ref_head, _plain_watch, *args),
    describe=lambda c: f"{_describe_model(c)}, num_classes={c['num_classes']}",
    deny=lambda: DenyList(modules=_DENIED, reason="build the new nn.Linear yourself"),
    mistakes=(
        Mistake("the model still has its old head: build the new layer and assign it to "
                "model.fc", _head_via(_head_not_assigned)),
        Mistake("the new head's input size is fixed: read it from the old head "
                "(model.fc.in_features), which depends on the network's width",
                _head_via(_head_fixed_inputs)),
        Mistake("a layer was added after the old head instead of replacing it: the new "
                "layer takes the backbone's features, not the old scores",
                _head_via(_head_stacked)),
        Mistake("the new head copies the old head's requires_grad: a new head must be "
                "trainable even when the old one was frozen", _head_via(_head_frozen_like_old)),
    ),
)


# --------------------------------------------------------------------------- param_groups

def groups_adapter(student, watch, depth, width, classes, state, seed, base_lr, head_lr):
    """The optimizer groups ``student(model, base_lr, head_lr)`` returns, per parameter
    (``named_parameters`` order): ``(learning rate, number of groups it is in)``; the rate
    is 0 for a parameter in no group (the first group's when in several)."""
    import torch

    model = build_model(depth, width, classes, state, seed)
    groups = watch(student, model, base_lr, head_lr)
    if isinstance(groups, dict) or not isinstance(groups, (list, tuple)):
        raise TypeError(f"param_groups must return a list of dicts, got "
                        f"{type(groups).__name__}")
    params = list(model.parameters())
    index = {id(p): i for i, p in enumerate(params)}
    rates = np.zeros(len(params))
    counts = np.zeros(len(params))
    for k, group in enumerate(groups):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"group {k} must be a dict with a 'params' entry, got "
                            f"{type(group).__name__}")
        if "lr" not in group:
            raise ValueError(f"group {k} has no 'lr' entry: the optimizer would give it "
                             "its default rate")
        members = group["params"]
        members = [members] if isinstance(members, torch.Tensor) else list(members)
        for p in members:
            i = index.get(id(p))
            if i is None:
                raise ValueError(f"group {k} holds a tensor that is not a parameter of "
                                 "the model")
            if counts[i] == 0:
                rates[i] = float(group["lr"])
            counts[i] += 1
    return rates, counts


def _rate(x):
    short = f"{x:.0e}"  # 3e-04: settings, written without a decimal point
    return short if float(short) == x else repr(x)


def _ref_groups(model, base_lr, head_lr):
    from cnnlib.torch import transfer

    backbone = [name for name, _ in model.named_children() if name != "fc"]
    return transfer.param_groups(model, head_lr, factor=head_lr / base_lr,
                                 groups=[backbone, ["fc"]])


def _split(model):
    head = [p for n, p in model.named_parameters() if n.startswith("fc.")]
    body = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    return body, head


def _groups_swapped(model, base_lr, head_lr):
    body, head = _split(model)
    return [{"params": body, "lr": head_lr}, {"params": head, "lr": base_lr}]


def _groups_head_twice(model, base_lr, head_lr):
    return [{"params": list(model.parameters()), "lr": base_lr},
            {"params": list(model.fc.parameters()), "lr": head_lr}]


def _groups_trainable_only(model, base_lr, head_lr):
    body, head = _split(model)
    return [{"params": [p for p in body if p.requires_grad], "lr": base_lr},
            {"params": [p for p in head if p.requires_grad], "lr": head_lr}]


def _groups_weight_only(model, base_lr, head_lr):
    named = dict(model.named_parameters())
    return [{"params": [p for n, p in named.items() if n != "fc.weight"], "lr": base_lr},
            {"params": [named["fc.weight"]], "lr": head_lr}]


def _groups_one_rate(rate):
    def impl(model, base_lr, head_lr):
        return [{"params": list(model.parameters()),
                 "lr": base_lr if rate == "base" else head_lr}]
    return impl


def _groups_via(impl):
    def variant(lib, args):
        if impl is _groups_trainable_only and STATES[args[3]] == "trainable":
            raise ValueError("applies when some parameters are frozen")
        return groups_adapter(impl, _plain_watch, *args)
    return variant


PARAM_GROUPS = FunctionSpec(
    name="param_groups",
    signature="param_groups(model, base_lr, head_lr)",
    returns=("array", "array"),
    parts=("learning rate of each parameter", "groups each parameter is in"),
    adapter=groups_adapter,
    inputs=lambda rng, c: (*_model_inputs(rng, c), float(c["base_lr"]), float(c["head_lr"])),
    reference=lambda lib, args: groups_adapter(_ref_groups, _plain_watch, *args),
    describe=lambda c: f"{_describe_model(c)}, base_lr={_rate(c['base_lr'])}, "
                       f"head_lr={_rate(c['head_lr'])}",
    deny=lambda: DenyList(modules=_DENIED, reason="build the list of groups yourself"),
    mistakes=(
        Mistake("the rates are swapped: the pre-trained backbone gets base_lr and the new "
                "head head_lr", _groups_via(_groups_swapped)),
        Mistake("the head's parameters are in both groups: model.parameters() includes the "
                "head, so leave the head out of the backbone's group",
                _groups_via(_groups_head_twice)),
        Mistake("frozen parameters were left out: put every parameter in a group (a frozen "
                "one gets no gradient and does not move), so the optimizer trains it once "
                "it is unfrozen", _groups_via(_groups_trainable_only)),
        Mistake("the head's bias has the backbone's rate: every parameter of model.fc "
                "belongs to the head", _groups_via(_groups_weight_only)),
        Mistake("every parameter has base_lr: the head needs its own group with head_lr",
                _groups_via(_groups_one_rate("base"))),
        Mistake("every parameter has head_lr: the backbone needs its own group with base_lr",
                _groups_via(_groups_one_rate("head"))),
    ),
)


# --------------------------------------------------------------------------- predict
# The hidden cells call predict with GRADER.run on images they draw with
# a5_task.target_images and
# compute its accuracy against a threshold themselves. GRADER.check would demand every label
# right; its reference is the true labels, remembered (in the grading process) for the
# images this spec drew.

_LABELS = {}


def _predict_inputs(rng, c):
    from .a5_task import target_images

    x, y = target_images(int(c["n"]), int(rng.integers(0, 2**31 - 1)))
    _LABELS[hash(x.tobytes())] = y.astype(np.float64)
    return (x,)


def _true_labels(lib, args):
    labels = _LABELS.get(hash(np.asarray(args[0]).tobytes()))
    if labels is None:
        raise ValueError("these images were not drawn by target_images for this spec")
    return labels


#: What predict is told when it draws images of the target task itself.
EXTRA_DATA_REASON = ("classify with the network you trained on the five labelled images per "
                     "class; drawing more images of the shapes breaks the assignment's rule "
                     "on training data")


def _predict_deny():
    """predict may not use a model zoo, nor draw images of the target task: the
    generator (``cnnlib.data.make_shapes``, and the grader's ``a5_task`` around it)."""
    from cnnlib.data import make_shapes

    return DenyList(modules=("torchvision", "timm", "cnnlib.grading.a5_task"),
                    functions=(make_shapes,), reason=EXTRA_DATA_REASON)


PREDICT = FunctionSpec(
    name="predict",
    signature="predict(images)",
    returns="array",
    inputs=_predict_inputs,
    reference=_true_labels,
    describe=lambda c: f"{c['n']} images of shape (1, {IMAGE_SIZE}, {IMAGE_SIZE})",
    deny=_predict_deny,
)


FUNCTIONS = {spec.name: spec for spec in (FREEZE_BACKBONE, REPLACE_HEAD, PARAM_GROUPS, PREDICT)}
