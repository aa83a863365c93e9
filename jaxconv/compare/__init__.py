"""``jaxconv compare``: the custom-VJP conv beside ``jax.grad`` of lax's conv, case by case.

For each :class:`Case` (a convolution's shapes and window options, ``cases``),
:func:`compare` (``runners``) runs, in one process and on the same random inputs:

* ``jaxconv.conv`` (ours, or any function with its signature passed as ``conv_fn``),
* ``jaxconv.lax_conv`` (``lax.conv_general_dilated``, differentiated by JAX),
  at the same ``precision`` as ours, and at ``HIGHEST`` as the reference,
* PyTorch's ``conv1d/2d/3d`` with autograd, when torch is importable (``torch_conv``),
* a plain GEMM of the conv's im2col shape, the practical speed limit,

and returns one :class:`CaseResult` per case (``results``):

**Errors** (``errors``). Max abs error and max relative error of the output,
dL/dx, dL/dw (and dL/db with a bias) against lax at ``precision=HIGHEST``
(computed in float32 for 16-bit dtypes), and against lax at the same
precision as ours. "Relative" is the max abs error divided by the max abs
value of the reference, which stays meaningful where single elements are near
zero. The gradients are those of ``L = sum(conv(x, w, b) * g)`` for a fixed
random cotangent ``g``, taken from the very executables that are timed.

**Tolerances.** A case passes when every relative error against the HIGHEST
reference is at most :func:`tolerance` of the dtype, the precision and the
backend: the dtype's own (:data:`TOLERANCES`) where the GEMMs compute in it,
a looser one where they do not (float32 at default precision is TF32 on
NVIDIA GPUs and one bfloat16 pass on TPUs, like lax's own conv there):

=================================  =========
arithmetic                         tolerance
=================================  =========
float64                            1e-10
float32 (CPU; HIGHEST anywhere)    1e-4
bfloat16 x3 (float32, TPU HIGH)    1e-3
TF32 (float32, GPU)                5e-3
float16                            5e-3
bfloat16 (and float32, TPU)        4e-2
=================================  =========

float32 and float64 sit far above rounding noise (an error there is a bug);
the others are about ten units of roundoff (2**-8 for bfloat16, 2**-11 for
float16 and TF32), far below what a wrong conv gives.

**Times** (``timing``). Median wall time of the jitted forward and of the jitted
``jax.value_and_grad(L, argnums=(0, 1[, 2]))``, after compile and warm-up,
each call ended by ``jax.block_until_ready``. The implementations are
interleaved call by call (rotating which goes first) so machine noise hits
all of them; PyTorch, whose OpenMP threads keep spinning after a call, runs in
its own blocks between the JAX ones, with an untimed call after each switch.
Each measurement takes at least ``repeats`` calls and, on average, about
``min_time`` seconds.

**Rates.** Forward FLOPs are ``2 * N * FN * prod(out) * C/groups * prod(kernel)``;
``value_and_grad`` counts three times that (forward and two backward GEMMs).
The GEMM reference is a jitted ``(M, K) @ (K, N)`` with ``M = N_batch * prod(out)``,
``K = C/groups * prod(kernel)``, ``N = FN`` (a batch of ``groups`` matmuls when grouped).

**Memory.** ``temp_size_in_bytes`` of XLA's ``compiled.memory_analysis()``,
or None where the backend does not report it.

**Timing noise from malloc**: see ``environment`` and :data:`MALLOC_ENV`.

``report`` prints the tables and writes JSON and CSV; ``cli`` is
``jaxconv compare`` and ``check`` is ``jaxconv check`` (the errors alone).

>>> case = Case.parse("x=8,3,16,16 w=4,3,3,3 padding=1")
>>> case.out_shape, case.flops
((8, 4, 16, 16), 442368)
>>> sorted(PRESETS)
['cnn', 'cpu-small', 'gpu', 'slowpaths', 'slowpaths-gpu']
"""

from jaxconv.compare.cases import Case as Case
from jaxconv.compare.environment import MALLOC_ENV as MALLOC_ENV
from jaxconv.compare.environment import cpu_count as cpu_count
from jaxconv.compare.environment import cpu_model as cpu_model
from jaxconv.compare.environment import environment as environment
from jaxconv.compare.environment import malloc_note as malloc_note
from jaxconv.compare.errors import ARITHMETIC_TOLERANCES as ARITHMETIC_TOLERANCES
from jaxconv.compare.errors import TOLERANCES as TOLERANCES
from jaxconv.compare.errors import Error as Error
from jaxconv.compare.errors import arithmetic as arithmetic
from jaxconv.compare.errors import tolerance as tolerance
from jaxconv.compare.presets import PRESETS as PRESETS
from jaxconv.compare.presets import as_cases as as_cases
from jaxconv.compare.presets import select_cases as select_cases
from jaxconv.compare.report import format_accuracy as format_accuracy
from jaxconv.compare.report import format_results as format_results
from jaxconv.compare.report import format_speed as format_speed
from jaxconv.compare.report import geometric_mean as geometric_mean
from jaxconv.compare.report import write_csv as write_csv
from jaxconv.compare.report import write_json as write_json
from jaxconv.compare.results import CaseResult as CaseResult
from jaxconv.compare.runners import compare as compare
from jaxconv.compare.timing import Timing as Timing
from jaxconv.compare.timing import time_interleaved as time_interleaved

__all__ = [
    "ARITHMETIC_TOLERANCES",
    "MALLOC_ENV",
    "PRESETS",
    "TOLERANCES",
    "Case",
    "CaseResult",
    "Error",
    "Timing",
    "arithmetic",
    "as_cases",
    "compare",
    "cpu_count",
    "cpu_model",
    "environment",
    "format_accuracy",
    "format_results",
    "format_speed",
    "geometric_mean",
    "malloc_note",
    "select_cases",
    "time_interleaved",
    "tolerance",
    "write_csv",
    "write_json",
]
