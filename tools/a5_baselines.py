"""What a5-transfer's target task gives without training a network: the baselines that
the hidden accuracy thresholds of ``predict`` must sit clearly above.

Every baseline learns from what the assignment's rule allows, five labelled images per
class, drawn afresh for each seed by the grader's generator
(:func:`cnnlib.grading.a5_task.target_images`), and is measured on 1000 held-out images
drawn from a seed that neither the notebook nor the hidden checks use (the same held-out
set as ``tools/a5_accuracy.py``):

- ``shape rule``: three numbers per image computed from its pixels (the share of bright
  pixels inside the bright pixels' bounding box, the bounding box's aspect ratio, and the
  share of bright pixels on the box's two diagonals), classified by the nearest class mean;
- ``nearest mean (pixels)``: each class's mean image, nearest in Euclidean distance;
- ``1-NN (pixels)``: the nearest of the 20 training images;
- ``logistic regression (pixels)``: scikit-learn's, on the 256 pixels;
- ``logistic regression (pre-trained features)``: on the 64 features the course's
  pre-trained small ResNet computes before its head, the network left as it is (no
  network training, only a linear classifier on top).

Prints each baseline's minimum, mean and maximum over the seeds.

    python tools/a5_baselines.py [--seeds 8]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

HELD_OUT = (1000, 314159)  # tools/a5_accuracy.py's held-out images
TRAIN_SEED0 = 10_000  # tools/a5_accuracy.py's training draws: seed s uses 10_000 + s


def shape_features(x, threshold=0.5):
    """(N, 3) numbers a hand-written pixel rule reads from (N, 1, H, W) images in [0, 1]."""
    bright = x[:, 0] > threshold  # (N, H, W)
    out = np.zeros((len(x), 3))
    for i, b in enumerate(bright):
        rows, cols = np.nonzero(b)
        if rows.size == 0:
            continue
        r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
        box = b[r0:r1 + 1, c0:c1 + 1]  # (h, w)
        h, w = box.shape
        k = min(h, w)
        diagonals = np.concatenate([np.diag(box[:k, :k]), np.diag(box[:k, ::-1][:k])])
        out[i] = box.mean(), h / w, diagonals.mean()
    return out


def flat(x):
    return x.reshape(len(x), -1)  # (N, 1, 16, 16) -> (N, 256)


def nearest_mean(f_train, y_train, f_test):
    """Labels of the nearest class mean, features standardised on the training set."""
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-9
    a, b = (f_train - mu) / sd, (f_test - mu) / sd
    classes = np.unique(y_train)
    means = np.stack([a[y_train == c].mean(0) for c in classes])  # (K, D)
    return classes[((b[:, None] - means[None]) ** 2).sum(-1).argmin(1)]


def one_nn(f_train, y_train, f_test):
    d = ((f_test[:, None] - f_train[None]) ** 2).sum(-1)  # (N_test, N_train)
    return y_train[d.argmin(1)]


def logistic(f_train, y_train, f_test):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return clf.fit(f_train, y_train).predict(f_test)


def pretrained_features(x):
    """(N, 64) features of the course's pre-trained small ResNet, before its head."""
    import torch

    from cnnlib.torch import models

    net = models.small_resnet(weights="DEFAULT")
    net.fc = torch.nn.Identity()
    net.eval()
    with torch.no_grad():
        return net(torch.as_tensor(x)).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args(argv)
    import torch

    from cnnlib.grading.a5_task import target_images

    torch.set_num_threads(1)
    x_held, y_held = target_images(*HELD_OUT)
    held = {"shape": shape_features(x_held), "pixels": flat(x_held),
            "features": pretrained_features(x_held)}
    baselines = {
        "shape rule": ("shape", nearest_mean),
        "nearest mean (pixels)": ("pixels", nearest_mean),
        "1-NN (pixels)": ("pixels", one_nn),
        "logistic regression (pixels)": ("pixels", logistic),
        "logistic regression (pre-trained features)": ("features", logistic),
    }
    rows = {name: [] for name in baselines}
    for seed in range(args.seeds):
        x, y = target_images(20, TRAIN_SEED0 + seed)
        train = {"shape": shape_features(x), "pixels": flat(x),
                 "features": pretrained_features(x)}
        for name, (kind, fit_predict) in baselines.items():
            rows[name].append(float(np.mean(fit_predict(train[kind], y, held[kind]) == y_held)))
    print(f"{args.seeds} seeds of 20 training images (5 per class), {len(y_held)} held-out images")
    for name, accs in rows.items():
        a = np.array(accs)
        print(f"{name:<44} min {a.min():.1%}  mean {a.mean():.1%}  max {a.max():.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
