"""Per-example clipped gradients by book-keeping: one backward pass that computes no batch
weight gradient, per-example norms layer by layer.

DP-SGD needs ``sum_i clip(g_i)``, the sum over the batch's examples of each example's gradient
clipped to norm ``C``. Opacus computes it from per-example gradients of every parameter, which
it forms after an ordinary backward pass (that also computes the unused batch gradient).
Book-keeping (Bu, Wang, Zha and Karypis, "Differentially private optimization on large model
at small cost", ICML 2023) needs only what backpropagation already has for each layer: its
input ``a`` and the gradient ``g`` of the loss with respect to its output.

- **Norms.** For a linear map (``Linear``, and ``Conv2d`` on its unfolded input) an example's
  weight gradient is ``G_i = g_i^T a_i`` over its ``T`` positions. Its squared norm comes
  either from ``G_i`` (``T d p`` operations; for convs on large feature maps as ONE grouped
  convolution's weight gradient with the examples as groups, else a batched product over the
  unfolded input) or, by the ghost norm trick, from ``sum((a_i a_i^T) * (g_i g_i^T))``
  (``T^2 (d + p)`` operations, never forming ``G_i``); each layer takes the cheaper (the "mixed
  ghost norm"). ``GroupNorm``'s per-example gradients are per-channel sums, formed outright.
- **Clipped sum.** With ``c_i = min(1, C / (||g_i|| + 1e-6))`` (opacus' factor), a layer's
  clipped sum is ``sum_i c_i G_i``: from its per-example gradients when they were formed and
  are small (``KEEP_BYTES``), else one weighted product, the layer's ordinary weight gradient
  with each example's output gradient scaled by ``c_i``. Per-example gradients never outlive
  the step, and large ones not their layer.

The backward pass runs with the parameters frozen, so autograd computes activation gradients
only; the weight gradients are formed once, clipped, here. Noise, the division by the expected
batch size and the accounting stay with opacus (``DPOptimizerFastGradientClipping`` and its
accountant), see ``miakit.training.dp_sgd.DPSGDStep``.

With DPDM's noise multiplicity an example's ``K`` replicas are consecutive rows of the batch
(``miakit.training.dp_sgd.replicate``) and its gradient is the sum over its replicas' rows.

``miakit.training.dp_sgd.per_sample_gradient_mismatches`` checks every parameter's per-example
gradient and the norms against a per-example loop, and ``benchmarks/dp_step.py`` times this
step against an ordinary one and against opacus' per-sample gradients, side by side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SUPPORTED = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm)
# a conv's per-example gradients come from one grouped conv from this many output positions on
# (measured on a 2-core CPU: oneDNN's grouped weight gradient is fast on large maps, slow on small ones)
GROUPED_FROM = 256
KEEP_BYTES = 64 * 2**20  # per-example gradients of one weight kept for the clipped sum up to this size
EPS = 1e-6  # opacus' clip factor: C / (norm + 1e-6), at most 1


class UnsupportedLayer(TypeError):
    """A trainable layer whose per-example gradients this module cannot form."""


class BookKeeping:
    """Hooks on ``model`` that turn one backward pass into per-example gradient norms and the
    per-example clipped gradient sum (``p.grad``) of every trainable parameter.

    Use: ``bk = BookKeeping(model, k)``; ``losses = bk.forward(fn)`` where ``fn()`` runs the
    model on the batch and returns its [rows] per-replica losses (rows = examples x k,
    example-major; an example's loss is the mean of its replicas'); ``norms = bk.clip(losses,
    max_norm)`` backpropagates, sets each parameter's ``.grad`` to the clipped sum over the
    batch's examples and returns the examples' unclipped gradient norms. ``bk.close()`` removes
    the hooks.
    """

    def __init__(self, model: torch.nn.Module, k: int = 1):
        self.model, self.k = model, k
        self.layers = []
        for name, m in model.named_modules():
            own = [p for p in m.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            if not isinstance(m, SUPPORTED):
                raise UnsupportedLayer(f"layer {name!r} ({type(m).__name__}) has trainable parameters; "
                                       f"book-keeping clipping handles {[c.__name__ for c in SUPPORTED]}")
            if isinstance(m, torch.nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros"):
                raise UnsupportedLayer(f"layer {name!r}: grouped or non-zero-padded convolutions are not handled")
            self.layers.append((name, m))
        self.params = [p for _, m in self.layers for p in m.parameters(recurse=False) if p.requires_grad]
        self.saved: dict[torch.nn.Module, list] = {}
        self.handles = [m.register_forward_hook(self._capture) for _, m in self.layers]
        self.active = False

    # -- capture ------------------------------------------------------------------------------
    def _capture(self, module, args, output):
        if not self.active:
            return None
        if module in self.saved:
            raise UnsupportedLayer(f"{type(module).__name__} ran twice in one forward pass (shared weights)")
        entry = [args[0].detach(), None]
        self.saved[module] = entry
        if not output.requires_grad:  # e.g. the first conv, whose input needs no gradient: a leaf
            output.requires_grad_(True)

        def keep(grad):
            entry[1] = grad.detach()
        output.register_hook(keep)
        return None

    def forward(self, fn):
        """Run ``fn()`` (the model's forward pass and per-replica losses) with the hooks armed
        and the parameters frozen, so the backward pass computes no weight gradient."""
        self.saved = {}
        frozen = [p.requires_grad for p in self.params]
        for p in self.params:
            p.requires_grad_(False)
        self.active = True
        try:
            return fn()
        finally:
            self.active = False
            for p, r in zip(self.params, frozen):
                p.requires_grad_(r)

    # -- norms and the clipped sum --------------------------------------------------------------
    def _by_example(self, x: torch.Tensor) -> torch.Tensor:
        """Rows [examples * k, ...] summed over each example's k replicas: [examples, ...]."""
        return x if self.k == 1 else x.reshape(x.shape[0] // self.k, self.k, *x.shape[1:]).sum(1)

    def _group_norm(self, m, a, g):
        """GroupNorm: per-example gradients are per-channel sums, formed outright."""
        xhat = F.group_norm(a, m.num_groups, eps=m.eps)
        gw = self._by_example((xhat * g).flatten(2).sum(2))
        gb = self._by_example(g.flatten(2).sum(2))
        return _squares(gw) + _squares(gb), lambda c: (c @ gw, c @ gb)

    def _rows(self, c: torch.Tensor) -> torch.Tensor:
        """Per-example weights [examples] repeated for each example's k replica rows."""
        return c if self.k == 1 else c.repeat_interleave(self.k)

    def _matrix_norms(self, a, g):
        """Squared per-example norms of ``G_i = g_i a_i`` for ``a`` [rows, positions, d] and
        ``g`` [rows, p, positions] (a Linear, or a Conv2d on its unfolded input), and ``G``
        [examples, p, d] when it was formed (else None). The ghost norm ``sum((a a^T) * (g^T
        g))`` when ``T (d + p) < d p`` (its cost against forming ``G``; ``T`` = positions of an
        example's replicas together), else ``G`` as one batched product."""
        k, (rows, positions, d), p = self.k, a.shape, g.shape[1]
        b = rows // k
        if k > 1:
            a = a.reshape(b, k * positions, d)
            g = g.reshape(b, k, p, positions).transpose(1, 2).reshape(b, p, k * positions)
        if a.shape[1] * (d + p) < d * p:
            return ((a @ a.transpose(1, 2)) * (g.transpose(1, 2) @ g)).sum((1, 2)).double(), None
        gw = g @ a
        return _squares(gw), gw

    def _bias(self, m, g_rows):
        """A bias whose per-row gradients are ``g_rows`` [rows, p]: (squared per-example norms,
        clipped sum)."""
        if m.bias is None or not m.bias.requires_grad:
            return 0.0, lambda c: None
        gb = self._by_example(g_rows)
        return _squares(gb), lambda c: c @ gb

    def _weighted(self, gw, product):
        """The clipped-sum function of a weight: ``sum_i c_i G_i`` from the per-example
        gradients ``gw`` when they were formed and are small enough to keep (``KEEP_BYTES``),
        else ``product(rows' weights)``, the layer's one weighted product over all rows."""
        if gw is not None and gw.numel() * gw.element_size() <= KEEP_BYTES:
            return lambda c: torch.einsum("i,i...->...", c, gw)
        return lambda c: product(self._rows(c))

    def _linear(self, m, a, g):
        """Linear: ``a`` [rows, ..., d], ``g`` [rows, ..., p]."""
        a, g = a.reshape(a.shape[0], -1, a.shape[-1]), g.reshape(g.shape[0], -1, g.shape[-1])
        sq, bias = self._bias(m, g.sum(1))
        part, gw = self._matrix_norms(a, g.transpose(1, 2))
        weight = self._weighted(gw, lambda r: (g * r[:, None, None]).reshape(-1, g.shape[-1]).T
                                @ a.reshape(-1, a.shape[-1]))
        return sq + part, lambda c: (weight(c), bias(c))

    def _conv(self, m, a, g):
        """Conv2d. Per-example norms: on large feature maps (>= ``GROUPED_FROM`` output
        positions, where unfolding the input would cost most) from the per-example weight
        gradients as one grouped convolution's weight gradient (the rows as groups), else from
        the unfolded input (``_matrix_norms``, no unfolding for 1x1 kernels). The clipped sum is
        ``sum_i c_i G_i`` over kept per-example gradients, or the convolution's ordinary weight
        gradient with each row's output gradient scaled by its example's ``c_i``."""
        n, c_in, h, w = a.shape
        p, positions = g.shape[1], g.shape[2] * g.shape[3]
        d = c_in * m.kernel_size[0] * m.kernel_size[1]
        sq, bias = self._bias(m, g.flatten(2).sum(2))
        if positions >= GROUPED_FROM and positions * (d + p) >= d * p:
            gw = torch.nn.grad.conv2d_weight(a.reshape(1, n * c_in, h, w), (n * p, c_in, *m.kernel_size),
                                             g.reshape(1, n * p, *g.shape[2:]), stride=m.stride, padding=m.padding,
                                             dilation=m.dilation, groups=n)
            gw = self._by_example(gw.reshape(n, p, d))
            part = _squares(gw)
        else:
            pointwise = m.kernel_size == (1, 1) and m.stride == (1, 1) and m.padding == (0, 0)
            part, gw = self._matrix_norms(a.flatten(2).transpose(1, 2) if pointwise else patches(a, m), g.flatten(2))
        weight = self._weighted(gw, lambda r: torch.nn.grad.conv2d_weight(
            a, m.weight.shape, g * r[:, None, None, None], stride=m.stride, padding=m.padding, dilation=m.dilation))
        return sq + part, lambda c: (weight(c), bias(c))

    def backward(self, losses: torch.Tensor):
        """Backpropagate ``losses`` (one per replica row); returns the examples' gradient norms
        [examples] and ``weigh(c)``, which sets every parameter's ``.grad`` to ``sum_i c_i
        grad_i`` over the examples (``c`` [examples])."""
        if losses.shape[0] % self.k:
            raise RuntimeError(f"{losses.shape[0]} loss rows are not a multiple of K = {self.k}")
        (losses.sum() / self.k).backward()
        sq = torch.zeros(losses.shape[0] // self.k, dtype=torch.float64, device=losses.device)
        sums = []  # (module, clipped-sum function) of each layer
        for _, m in self.layers:
            a, g = self.saved.get(m, (None, None))
            if a is None or g is None:  # the layer took no part in the loss: its gradient is zero
                sums.append((m, None))
                continue
            if isinstance(m, torch.nn.GroupNorm):
                part, weighted = self._group_norm(m, a, g)
            elif isinstance(m, torch.nn.Conv2d):
                part, weighted = self._conv(m, a, g)
            else:
                part, weighted = self._linear(m, a, g)
            sq += part
            sums.append((m, weighted))
        self.saved = {}

        def weigh(c: torch.Tensor) -> None:
            c = c.to(losses.dtype)
            for m, weighted in sums:
                w, bias = m.weight, getattr(m, "bias", None)
                gw, gb = (torch.zeros_like(w), None if bias is None else torch.zeros_like(bias)) \
                    if weighted is None else weighted(c)
                if w.requires_grad:
                    w.grad = gw.reshape(w.shape)
                if bias is not None and bias.requires_grad:
                    bias.grad = gb
        return sq.sqrt(), weigh

    def clip(self, losses: torch.Tensor, max_norm: float) -> torch.Tensor:
        """Backpropagate ``losses`` (one per replica row), set every parameter's ``.grad`` to the
        sum over the examples of their gradients clipped to ``max_norm`` (opacus' factor ``c_i =
        min(1, max_norm / (norm_i + 1e-6))``) and return the examples' unclipped norms."""
        norms, weigh = self.backward(losses)
        weigh((max_norm / (norms + EPS)).clamp(max=1.0))
        return norms

    def per_example(self, losses: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every example's unclipped gradient of every parameter, {name: [examples, *shape]},
        with the norms: the clipped sum taken with one-hot weights, one example at a time (for
        checks; training never forms them)."""
        norms, weigh = self.backward(losses)
        names = {id(p): n for n, p in self.model.named_parameters()}
        grads: dict[str, list] = {names[id(p)]: [] for p in self.params}
        for i in range(norms.shape[0]):
            weigh(torch.nn.functional.one_hot(torch.tensor(i, device=norms.device), norms.shape[0]).double())
            for p in self.params:
                grads[names[id(p)]].append(p.grad.clone())
        for p in self.params:
            p.grad = None
        return norms, {n: torch.stack(v) for n, v in grads.items()}

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def _squares(x: torch.Tensor) -> torch.Tensor:
    """Squared norm of each row's entries: [rows, ...] -> [rows], float64 (the sum over layers
    is taken in float64; each layer's norm in the tensor's own precision, 5x faster on CPU)."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1).double().square()


def patches(a: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """The input patches ``conv`` multiplies, [n, output positions, channels * kh * kw] in the
    order of ``conv.weight.reshape(out, -1)``: ``F.unfold(...).transpose(1, 2)``, built from
    strided slices of the padded input (a few times faster than unfold plus a transpose on CPU)."""
    n, c, h, w = a.shape
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = conv.kernel_size, conv.stride, conv.dilation, conv.padding
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    padded = F.pad(a, (pw, pw, ph, ph)).permute(0, 2, 3, 1)
    cols = [padded[:, u * dh: u * dh + sh * (ho - 1) + 1: sh, v * dw: v * dw + sw * (wo - 1) + 1: sw]
            for u in range(kh) for v in range(kw)]
    return torch.stack(cols, dim=-1).reshape(n, ho * wo, c * kh * kw)

