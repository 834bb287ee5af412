"""NumPy reference implementations of every layer in the course.

Images are NCHW, conv weights ``(C_out, C_in, KH, KW)``, linear weights
``(out_features, in_features)``: PyTorch's conventions, so every op can be checked
against ``torch.nn.functional``. Ops come in pairs, ``out, cache = <op>_forward(...)``
and ``grads = <op>_backward(dout, cache)``. Nothing here imports torch.
"""

from .activations import *  # noqa: F403
from .batchnorm import *  # noqa: F403
from .boxes import *  # noqa: F403
from .conv import *  # noqa: F403
from .gradcheck import *  # noqa: F403
from .layers import *  # noqa: F403
from .linear import *  # noqa: F403
from .losses import *  # noqa: F403
from .models import *  # noqa: F403
from .optim import *  # noqa: F403
from .pool import *  # noqa: F403
from .segmentation import *  # noqa: F403
from .trainer import *  # noqa: F403
