"""Sample students of Assignment 4 (LeNet to ResNet): class and function bodies written
independently of the solution notebook, in the styles students use (layers as attributes,
``nn.Sequential``, functional calls), with every mistake the spec module ``cnnlib.grading.a4``
names. ``fill`` turns the released notebook into a submission; ``write_examples``
(``python tests/grading/a4_students.py`` after a new release) writes the samples of
``examples/submissions/``: ``alice_complete``, ``bob_partial``, ``a4_lazy_layers`` (correct
code in another style: lazy layers) and one ``a4_<mistake>`` student per known mistake, each
correct everywhere except in that one place.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "a4-architectures"
NOTEBOOK = "architectures.ipynb"
RELEASE = ROOT / "assignments" / ASSIGNMENT / NOTEBOOK

# Configurations on which each of the spec's mistakes shows, for the tests of the judge
# (test_grading_checks.py, test_a4.py); never the hidden ones.
PROBES = {
    "LeNet5": [dict(n=2), dict(n=1, num_classes=3)],
    "vgg_block": [dict(x=[1, 2, 8, 8], out_channels=3, num_convs=2),
                  dict(x=[2, 3, 6, 6], out_channels=3, num_convs=1)],
    "InceptionBlock": [dict(x=[1, 3, 5, 5], c1=2, c2=[2, 3], c3=[2, 4], c4=2),
                       dict(x=[2, 4, 6, 6], c1=2, c2=[3, 4], c3=[2, 3], c4=3)],
    "ResidualBlock": [dict(x=[2, 3, 5, 5], out_channels=3),
                      dict(x=[2, 3, 6, 6], out_channels=4, stride=2)],
    "count_parameters": [dict(kind=k, a=3, b=4, frozen=f) for k in range(5) for f in (0, 1)],
    "receptive_field": [dict(layers=[["conv", 3, 1], ["pool", 2, 2], ["conv", 3, 2],
                                     ["conv", 3, 1]]),
                        dict(layers=[["conv", 5, 1], ["pool", 3, 2], ["conv", 3, 1]])],
    "train_digits": [dict(seed=0)],
}
# Graded functions whose arguments are the configuration itself (no drawn values).
CONFIG_ONLY = {"count_parameters", "receptive_field", "train_digits"}

# --------------------------------------------------------------------------- correct code
LENET = '''
class LeNet5(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.act = nn.Tanh()

    def forward(self, x):
        x = self.pool1(self.act(self.conv1(x)))
        x = self.pool2(self.act(self.conv2(x)))
        x = x.view(x.shape[0], -1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        x = self.fc3(x)
        return x
'''
VGG = '''
def vgg_block(in_channels, out_channels, num_convs):
    block = nn.Sequential()
    for i in range(num_convs):
        c_in = in_channels if i == 0 else out_channels
        block.append(nn.Conv2d(c_in, out_channels, 3, padding=1))
        block.append(nn.ReLU(inplace=True))
    block.append(nn.MaxPool2d(2))
    return block
'''
INCEPTION = '''
class InceptionBlock(nn.Module):
    def __init__(self, in_channels, c1, c2, c3, c4):
        super().__init__()
        self.branch1 = nn.Conv2d(in_channels, c1, 1)
        self.branch2 = nn.Sequential(
            nn.Conv2d(in_channels, c2[0], 1), nn.ReLU(), nn.Conv2d(c2[0], c2[1], 3, padding=1))
        self.branch3 = nn.Sequential(
            nn.Conv2d(in_channels, c3[0], 1), nn.ReLU(), nn.Conv2d(c3[0], c3[1], 5, padding=2))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, c4, 1))

    def forward(self, x):
        y1 = F.relu(self.branch1(x))
        y2 = F.relu(self.branch2(x))
        y3 = F.relu(self.branch3(x))
        y4 = F.relu(self.branch4(x))
        return torch.cat((y1, y2, y3, y4), dim=1)
'''
RESIDUAL = '''
class ResidualBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.downsample = None
        else:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU()

    def forward(self, x):
        identity = x
        if self.downsample is not None:
            identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu(out)
'''
COUNT = '''
def count_parameters(model):
    total = 0
    for p in model.parameters():
        total += p.numel()
    return total
'''
RF = '''
def receptive_field(layers):
    r = 1
    j = 1
    for kind, k, s in layers:
        r = r + (k - 1) * j
        j = j * s
    return r
'''
TASK_KERNELS = '''
cs = [16, 32, 64, 128, 256, 512]
big = [count_parameters(nn.Conv2d(c, c, 7, bias=False, device="meta")) for c in cs]
small = [count_parameters(nn.Sequential(*[nn.Conv2d(c, c, 3, bias=False, device="meta")
                                          for _ in range(3)])) for c in cs]
print(receptive_field([("conv", 7, 1)]), receptive_field([("conv", 3, 1)] * 3))
plt.loglog(cs, big, label="7x7")
plt.loglog(cs, small, label="3 x 3x3")
plt.legend()
plt.show()
'''
KERNELS_ANSWER = ("One 7x7 convolution has 49C^2 weights, three 3x3 ones 27C^2, 55 % as many. "
                  "Both see a 7x7 window (receptive field 7), and the stack puts three ReLUs "
                  "where the single layer has one, so it can compute more complex functions.")
TASK_HEAD = '''
dense = nn.Sequential(nn.Linear(25088, 4096, device="meta"), nn.Linear(4096, 4096, device="meta"),
                      nn.Linear(4096, 1000, device="meta"))
gap = nn.Linear(512, 1000, device="meta")
names = ["dense", "gap", "convs"]
values = [count_parameters(dense), count_parameters(gap), 14_714_688]
plt.bar(names, values)
plt.yscale("log")
plt.show()
'''
HEAD_ANSWER = ("Almost all of the dense head's 124 million parameters are in the first layer "
               "(25088 x 4096). Global average pooling keeps only the mean of each map, so it "
               "gives up where a feature was; the maps are trained to say what is there, which "
               "is what a classifier needs, and the network then accepts any input size.")

CORRECT = {"LeNet5": LENET, "vgg_block": VGG, "InceptionBlock": INCEPTION,
           "ResidualBlock": RESIDUAL, "count_parameters": COUNT, "receptive_field": RF}

# --------------------------------------------------------------------------- correct, differently
# d2l's current blocks: lazy convolutions learn their input channels from the first
# forward pass (the in_channels arguments go unused). Correct, so full marks.
LAZY_VGG = '''
def vgg_block(in_channels, out_channels, num_convs):
    layers = []
    for _ in range(num_convs):
        layers.append(nn.LazyConv2d(out_channels, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)
'''
LAZY_INCEPTION = '''
class InceptionBlock(nn.Module):
    def __init__(self, in_channels, c1, c2, c3, c4):
        super().__init__()
        self.branch1 = nn.LazyConv2d(c1, kernel_size=1)
        self.branch2 = nn.Sequential(nn.LazyConv2d(c2[0], kernel_size=1), nn.ReLU(),
                                     nn.LazyConv2d(c2[1], kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(nn.LazyConv2d(c3[0], kernel_size=1), nn.ReLU(),
                                     nn.LazyConv2d(c3[1], kernel_size=5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
                                     nn.LazyConv2d(c4, kernel_size=1))

    def forward(self, x):
        b1 = F.relu(self.branch1(x))
        b2 = F.relu(self.branch2(x))
        b3 = F.relu(self.branch3(x))
        b4 = F.relu(self.branch4(x))
        return torch.cat((b1, b2, b3, b4), dim=1)
'''
# {student: {graded name: code}}: correct code written differently from CORRECT.
DIFFERENT = {"a4_lazy_layers": {"vgg_block": LAZY_VGG, "InceptionBlock": LAZY_INCEPTION}}

# A block right in everything but the projection's name, ``shortcut`` (a common one)
# where the notebook states ``downsample``: it loses the points of the names, and is told
# that the name is all that differs.
SHORTCUT_NAMED = RESIDUAL.replace("self.downsample", "self.shortcut")

# --------------------------------------------------------------------------- mistakes
# {student: (graded name, code)}: one known mistake each, everything else correct.
MISTAKES = {
    "a4_lenet_maxpool": ("LeNet5", LENET.replace("nn.AvgPool2d", "nn.MaxPool2d")),
    "a4_lenet_relu": ("LeNet5", LENET.replace("nn.Tanh()", "nn.ReLU()")),
    "a4_lenet_tanh_out": ("LeNet5", LENET.replace("x = self.fc3(x)", "x = self.act(self.fc3(x))")),
    "a4_lenet_softmax": ("LeNet5", LENET.replace("x = self.fc3(x)",
                                                 "x = F.softmax(self.fc3(x), dim=1)")),
    "a4_vgg_no_padding": ("vgg_block", VGG.replace(", padding=1", "")),
    "a4_vgg_last_relu": ("vgg_block", VGG.replace(
        "        block.append(nn.ReLU(inplace=True))",
        "        if i < num_convs - 1:\n            block.append(nn.ReLU(inplace=True))")),
    "a4_vgg_avgpool": ("vgg_block", VGG.replace("nn.MaxPool2d(2)", "nn.AvgPool2d(2)")),
    "a4_inception_order": ("InceptionBlock", INCEPTION.replace("(y1, y2, y3, y4)",
                                                               "(y1, y3, y2, y4)")),
    "a4_inception_inner_relu": ("InceptionBlock", INCEPTION.replace(
        "nn.Conv2d(in_channels, c2[0], 1), nn.ReLU(),", "nn.Conv2d(in_channels, c2[0], 1),"
        " nn.Identity(),").replace("nn.Conv2d(in_channels, c3[0], 1), nn.ReLU(),",
                                   "nn.Conv2d(in_channels, c3[0], 1), nn.Identity(),")),
    "a4_inception_outer_relu": ("InceptionBlock", INCEPTION.replace("F.relu(self.branch",
                                                                    "(self.branch")),
    "a4_inception_avgpool": ("InceptionBlock", INCEPTION.replace("nn.MaxPool2d(3",
                                                                 "nn.AvgPool2d(3")),
    "a4_residual_relu_before_add": ("ResidualBlock", RESIDUAL.replace(
        "out = self.bn2(self.conv2(out))\n        out = out + identity\n"
        "        return self.relu(out)",
        "out = self.relu(self.bn2(self.conv2(out)))\n        return out + identity")),
    "a4_residual_no_final_relu": ("ResidualBlock", RESIDUAL.replace(
        "return self.relu(out)", "return out")),
    "a4_residual_no_shortcut": ("ResidualBlock", RESIDUAL.replace(
        "        out = out + identity\n", "")),
    "a4_residual_stride_in_conv2": ("ResidualBlock", RESIDUAL.replace(
        "(in_channels, out_channels, 3, stride, 1, bias=False)",
        "(in_channels, out_channels, 3, 1, 1, bias=False)").replace(
        "(out_channels, out_channels, 3, 1, 1, bias=False)",
        "(out_channels, out_channels, 3, stride, 1, bias=False)")),
    "a4_count_no_bias": ("count_parameters", COUNT.replace(
        "        total += p.numel()", "        if p.dim() > 1:\n            total += p.numel()")),
    "a4_count_shared_twice": ("count_parameters", '''
def count_parameters(model):
    state = model.state_dict()
    return sum(v.numel() for k, v in state.items() if "running" not in k and "batches" not in k)
'''),
    "a4_count_trainable": ("count_parameters", '''
def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
'''),
    "a4_count_buffers": ("count_parameters", '''
def count_parameters(model):
    return sum(t.numel() for t in list(model.parameters()) + list(model.buffers()))
'''),
    "a4_rf_no_stride": ("receptive_field", '''
def receptive_field(layers):
    r = 1
    for kind, k, s in layers:
        r += k - 1
    return r
'''),
    "a4_rf_own_stride": ("receptive_field", RF.replace(
        "r = r + (k - 1) * j\n        j = j * s", "j = j * s\n        r = r + (k - 1) * j")),
    "a4_rf_start_zero": ("receptive_field", RF.replace("r = 1", "r = 0")),
    "a4_rf_product": ("receptive_field", '''
def receptive_field(layers):
    r = 1
    for kind, k, s in layers:
        r *= k
    return r
'''),
}


def fill(functions=None, *, tasks=False, release=RELEASE, extra_cells=()):
    """A submission: the released notebook with solution cells replaced by student code.

    ``functions`` maps a solution cell's grade_id (``LeNet5``, ``vgg_block``, ...,
    ``task_kernels_code``, ``task_head_code``) to the code that replaces its stub.
    """
    nb = json.loads(Path(release).read_text())
    functions = dict(functions or {})
    answers = []
    if tasks:
        functions.update(task_kernels_code=TASK_KERNELS, task_head_code=TASK_HEAD)
        answers = [KERNELS_ANSWER, HEAD_ANSWER]
    for source in extra_cells:
        nb["cells"].append({"cell_type": "code", "execution_count": None,
                            "id": f"extra-{len(nb['cells'])}", "metadata": {}, "outputs": [],
                            "source": source})
    for cell in nb["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in functions:
            cell["source"] = functions[grade_id].strip("\n")
        elif (cell["cell_type"] == "markdown" and answers
              and "Your explanation here" in "".join(cell["source"])):
            cell["source"] = answers.pop(0)
    return nb


def complete():
    return fill(CORRECT, tasks=True)


def partial():
    """LeNet-5, the VGG block and the two tools; no Inception or residual block, no tasks."""
    return fill({k: v for k, v in CORRECT.items() if k not in ("InceptionBlock",
                                                                "ResidualBlock")})


def with_mistake(student):
    name, code = MISTAKES[student]
    assert code != CORRECT[name], f"{student}: the mistake did not change the code"
    return fill(dict(CORRECT, **{name: code}), tasks=True)


def samples():
    """{student: notebook} of every sample in examples/submissions/ for this assignment."""
    out = {"alice_complete": complete(), "bob_partial": partial()}
    out.update({student: fill(dict(CORRECT, **code), tasks=True)
                for student, code in DIFFERENT.items()})
    out.update({student: with_mistake(student) for student in MISTAKES})
    return out


def path(folder, student):
    return Path(folder) / student / ASSIGNMENT / NOTEBOOK


def dumps(nb):
    return json.dumps(nb, indent=1) + "\n"


def write_examples(target=ROOT / "examples" / "submissions"):
    """Regenerate this assignment's samples in examples/submissions from the release."""
    for student, nb in samples().items():
        p = path(target, student)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(dumps(nb))


def edit_cells(nb, grade_ids, source):
    nb = copy.deepcopy(nb)
    for c in nb["cells"]:
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") in grade_ids:
            c["source"] = source
    return nb


if __name__ == "__main__":
    write_examples()
