"""cnnlib: the reference library of the course on convolutional neural networks.

Subpackages
-----------
cnnlib.numpy    every layer's forward and backward pass in NumPy (naive and vectorized)
cnnlib.torch    PyTorch model zoo, training on CPU/GPU/several GPUs, transfer learning
cnnlib.data     datasets that work offline, and readers for local MNIST/CIFAR/image folders
cnnlib.viz      figures and interactive explorers used by the book
cnnlib.grading  machinery the hidden tests of the assignments use
"""

__version__ = "0.1.0"
