"""One LeNet-5 training epoch on the digits: cnnlib.numpy's Trainer against PyTorch.

Both train the same network (same initial weights) on the 1,438 training digits at
32x32, float32, batches of 64, SGD with momentum 0.9, in this process with the same
number of threads (PyTorch's is set to what NumPy's BLAS uses). It times the NumPy
epochs and then the PyTorch epochs, each library after a pause that lets the
other's idle threads stop spinning and one untimed epoch (see
``benchmarks._timing.side_by_side``); the figures are medians over the repeats, after
one warm-up epoch each.

Run with ``python -m benchmarks lenet`` (or ``make bench`` for every benchmark).
"""

from __future__ import annotations

import numpy as np

from benchmarks._timing import blas_threads, side_by_side

BATCH_SIZE = 64
REPEATS = 5


def main() -> None:
    import torch
    from torch import nn

    from cnnlib.data import load_digits
    from cnnlib.numpy import Trainer, lenet5

    _, threads = blas_threads()
    torch.set_num_threads(threads)
    split = load_digits()
    x, y = split.x_train, split.y_train

    net = lenet5(rng=0)
    trainer = Trainer(net, optimizer="sgd_momentum", learning_rate=0.01,
                      optim_config={"momentum": 0.9}, batch_size=BATCH_SIZE,
                      normalize=False, seed=0, progress=False)
    twin = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84),
        nn.Tanh(), nn.Linear(84, 10))
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    opt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(0)

    def torch_epoch() -> None:
        order = torch.from_numpy(rng.permutation(len(x)))
        for b in range(0, len(x), BATCH_SIZE):
            idx = order[b:b + BATCH_SIZE]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(twin(xt[idx]), yt[idx])
            loss.backward()
            opt.step()

    def numpy_epoch() -> None:
        trainer.fit(x, y, epochs=1)

    t_np, t_torch = side_by_side(numpy_epoch, torch_epoch, REPEATS, block=REPEATS, lead_in=1,
                                 settle=0.15)
    print(f"LeNet-5, one epoch of {len(x)} digits (32x32, float32, batch {BATCH_SIZE}, "
          f"SGD momentum), {threads} thread(s), median of {REPEATS}:")
    print(f"  cnnlib.numpy Trainer  {t_np:7.3f} s/epoch")
    print(f"  PyTorch               {t_torch:7.3f} s/epoch")
    print(f"  ratio numpy / torch   {t_np / t_torch:7.2f}")
    print(f"  (final train loss: numpy {trainer.history['train_loss'][-1]:.4f})")


if __name__ == "__main__":
    main()
