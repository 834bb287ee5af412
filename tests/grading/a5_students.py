"""Sample students of a5-transfer: code written independently of the solution notebook, in
the styles students use, with every known mistake of ``cnnlib/grading/a5.py``.

``fill`` turns the released notebook into a submission. ``examples/submissions/`` holds
``alice_complete``, ``bob_partial`` and one student per known mistake (``a5_<mistake>``),
written by ``write_examples`` (``python tests/grading/a5_students.py`` after a new
release); a test checks that the committed samples equal what this file generates.

A mistake student trains the network of section 4 without the function that holds the
mistake (one learning rate, a head built by hand), so the mistake costs the points of
that function only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from a1_students import HANG, SEGFAULT  # noqa: E402 - the broken functions every generator uses
from a1_students import fill as _fill  # noqa: E402

ASSIGNMENT = "a5-transfer"
NOTEBOOK = "transfer.ipynb"
RELEASE = ROOT / "assignments" / ASSIGNMENT / NOTEBOOK

# --------------------------------------------------------------------------- correct code
FREEZE = '''
def freeze_backbone(model):
    for p in model.parameters():
        p.requires_grad_(False)
    model.fc.weight.requires_grad_(True)
    model.fc.bias.requires_grad_(True)
    return model
'''
HEAD = '''
def replace_head(model, num_classes):
    features = model.fc.in_features
    model.fc = nn.Linear(features, num_classes)
    return model
'''
GROUPS = '''
def param_groups(model, base_lr, head_lr):
    head, body = [], []
    for name, p in model.named_parameters():
        if name.startswith("fc."):
            head.append(p)
        else:
            body.append(p)
    return [{"params": body, "lr": base_lr}, {"params": head, "lr": head_lr}]
'''
# section 4 with the student's own functions
TRAIN = '''
aug = augment.Compose(augment.RandomRotation(10), augment.RandomResizedCrop((0.75, 1.0)))
torch.manual_seed(SEED)
net = models.small_resnet(weights="DEFAULT")
replace_head(net, 4)
opt = torch.optim.AdamW(param_groups(net, 3e-3, 3e-2))
history = fit(net, (x_train, y_train), epochs=30, batch_size=20, optimizer=opt, transform=aug,
              device="cpu", progress=False, seed=SEED)
'''
# section 4 without the graded functions: a head built by hand, one learning rate
TRAIN_PLAIN = '''
aug = augment.Compose(augment.RandomRotation(10), augment.RandomResizedCrop((0.75, 1.0)))
torch.manual_seed(SEED)
net = models.small_resnet(weights="DEFAULT")
net.fc = nn.Linear(64, 4)
opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
history = fit(net, (x_train, y_train), epochs=30, batch_size=20, optimizer=opt, transform=aug,
              device="cpu", progress=False, seed=SEED)
'''
PREDICT = '''
def predict(images):
    net.eval()
    with torch.no_grad():
        out = net(torch.from_numpy(images))
    return out.argmax(1).numpy()
'''
TASK = '''
def run(kind, seed):
    torch.manual_seed(seed)
    if kind == "scratch":
        m = models.small_resnet(num_classes=4)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    else:
        m = replace_head(models.small_resnet(weights="DEFAULT"), 4)
        if kind == "features":
            freeze_backbone(m)
            opt = torch.optim.AdamW(m.fc.parameters(), lr=3e-2)
        else:
            opt = torch.optim.AdamW(param_groups(m, 3e-3, 3e-2))
    fit(m, (x_train, y_train), epochs=30, batch_size=20, optimizer=opt, transform=aug,
        device="cpu", progress=False, seed=seed)
    return evaluate(m, (x_test, y_test), device="cpu").accuracy

acc = {kind: [run(kind, s) for s in (1, 2, 3)] for kind in ("scratch", "features", "finetune")}
plt.figure(figsize=(5, 3))
for i, (kind, values) in enumerate(acc.items()):
    plt.plot([i] * 3, values, "o")
    plt.plot([i - 0.2, i + 0.2], [np.mean(values)] * 2, "k-")
plt.xticks(range(3), list(acc))
plt.ylabel("test accuracy")
plt.show()
print(acc)
'''
ANSWER = ("Fine-tuning wins by about twenty points over training from scratch, more than the "
          "spread between seeds. With 30 steps on 20 images a random network has barely left "
          "guessing, while the pre-trained one already detects strokes, edges and corners and "
          "only has to combine them differently. Feature extraction keeps features made to "
          "separate digits, so it stops lower. With 500 images per class, training from "
          "scratch would catch up, and the pre-trained start would mostly save time.")

# --------------------------------------------------------------------------- mistakes
FREEZE_MISTAKES = {
    "a5_freeze_head_frozen": '''
def freeze_backbone(model):
    for param in model.parameters():
        param.requires_grad = False
    return model
''',
    "a5_freeze_module_attribute": '''
def freeze_backbone(model):
    for name, child in model.named_children():
        if name != "fc":
            child.requires_grad = False
    return model
''',
    "a5_freeze_convs_only": '''
def freeze_backbone(model):
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.requires_grad = False
    for p in model.fc.parameters():
        p.requires_grad = True
    return model
''',
    "a5_freeze_stem_only": '''
def freeze_backbone(model):
    model.conv1.weight.requires_grad = False
    model.fc.weight.requires_grad = True
    model.fc.bias.requires_grad = True
    return model
''',
}
HEAD_MISTAKES = {
    "a5_head_not_assigned": '''
def replace_head(model, num_classes):
    new_head = nn.Linear(model.fc.in_features, num_classes)
    return new_head
''',
    "a5_head_fixed_inputs": '''
def replace_head(model, num_classes):
    model.fc = nn.Linear(64, num_classes)
    return model
''',
    "a5_head_stacked": '''
def replace_head(model, num_classes):
    model.fc = nn.Sequential(model.fc, nn.Linear(model.fc.out_features, num_classes))
    return model
''',
    "a5_head_frozen_like_old": '''
def replace_head(model, num_classes):
    old = model.fc
    model.fc = nn.Linear(old.in_features, num_classes)
    model.fc.weight.requires_grad = old.weight.requires_grad
    model.fc.bias.requires_grad = old.bias.requires_grad
    return model
''',
}
GROUPS_MISTAKES = {
    "a5_groups_swapped": GROUPS.replace('"lr": base_lr}, {"params": head, "lr": head_lr}',
                                        '"lr": head_lr}, {"params": head, "lr": base_lr}'),
    "a5_groups_head_twice": '''
def param_groups(model, base_lr, head_lr):
    return [{"params": model.parameters(), "lr": base_lr},
            {"params": model.fc.parameters(), "lr": head_lr}]
''',
    "a5_groups_trainable_only": '''
def param_groups(model, base_lr, head_lr):
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("fc")]
    head = [p for p in model.fc.parameters() if p.requires_grad]
    return [{"params": body, "lr": base_lr}, {"params": head, "lr": head_lr}]
''',
    "a5_groups_weight_only": '''
def param_groups(model, base_lr, head_lr):
    rest = [p for n, p in model.named_parameters() if n != "fc.weight"]
    return [{"params": rest, "lr": base_lr}, {"params": [model.fc.weight], "lr": head_lr}]
''',
    "a5_groups_one_rate_base": '''
def param_groups(model, base_lr, head_lr):
    return [{"params": list(model.parameters()), "lr": base_lr}]
''',
    "a5_groups_one_rate_head": '''
def param_groups(model, base_lr, head_lr):
    return [{"params": list(model.parameters()), "lr": head_lr}]
''',
}
# which function each mistake student gets wrong
MISTAKES = {**{k: ("freeze_backbone", v) for k, v in FREEZE_MISTAKES.items()},
            **{k: ("replace_head", v) for k, v in HEAD_MISTAKES.items()},
            **{k: ("param_groups", v) for k, v in GROUPS_MISTAKES.items()}}

# --------------------------------------------------------------------------- broken code
HEAD_ONE_ARGUMENT = '''
def replace_head(model):
    model.fc = nn.Linear(model.fc.in_features, 4)
    return model
'''
GROUPS_NAN = GROUPS.replace('"lr": base_lr}', '"lr": float("nan")}')
PREDICT_SCORES = '''
def predict(images):
    net.eval()
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(images)), dim=1).numpy()
'''


def fill(functions=None, task=None, answer=None, *, extra_cells=(), release=RELEASE):
    """A submission: the release with the stubs of ``functions`` (grade_id -> code)
    replaced; ``task`` fills the comparison cell."""
    functions = dict(functions or {})
    if task:
        functions["task_comparison_code"] = task
    nb = _fill(functions, answer=answer, extra_cells=extra_cells, release=release)
    return nb


def complete():
    return fill({"freeze_backbone": FREEZE, "replace_head": HEAD, "param_groups": GROUPS,
                 "finetune": TRAIN, "predict": PREDICT}, task=TASK, answer=ANSWER)


def partial():
    return fill({"freeze_backbone": FREEZE, "replace_head": HEAD})


def with_mistake(student):
    """Every function right but the one ``student`` (a key of MISTAKES) gets wrong."""
    function, code = MISTAKES[student]
    functions = {"freeze_backbone": FREEZE, "replace_head": HEAD, "param_groups": GROUPS,
                 "finetune": TRAIN_PLAIN, "predict": PREDICT}
    functions[function] = code
    return fill(functions)


def broken():
    """Broken functions, each its own way: a missing function, a wrong signature, NaN."""
    return fill({"freeze_backbone": "# not done yet", "replace_head": HEAD_ONE_ARGUMENT,
                 "param_groups": GROUPS_NAN, "finetune": TRAIN_PLAIN, "predict": PREDICT})


def crashing():
    """A crash, a hang and a result of the wrong shape; replace_head is right."""
    return fill({"freeze_backbone": SEGFAULT.format(name="freeze_backbone"),
                 "replace_head": HEAD, "param_groups": HANG.format(name="param_groups"),
                 "finetune": TRAIN_PLAIN, "predict": PREDICT_SCORES})


def samples():
    """{student: notebook} of every sample in examples/submissions."""
    out = {"alice_complete": complete(), "bob_partial": partial()}
    out.update({student: with_mistake(student) for student in MISTAKES})
    return out


def write(nb, target, student):
    path = Path(target) / student / ASSIGNMENT / NOTEBOOK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1) + "\n")
    return path


def write_examples(target=ROOT / "examples" / "submissions"):
    """Regenerate this assignment's samples in examples/submissions from the release."""
    for student, nb in samples().items():
        write(nb, target, student)


if __name__ == "__main__":
    write_examples()
