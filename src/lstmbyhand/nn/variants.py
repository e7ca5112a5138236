r"""The LSTM cell's variants, declared once: one step forward and, beside it, its derivative.

Every variant is an option of `Variant`; the step `cell_forward` runs them all (all options off: the
plain LSTM of `gates.py`, same numbers). `sequence.variant_sequence` loops it over time with
autograd (the readable reference, what `LSTM.trace` records), `variant_bptt` loops it with the hand
derivative `cell_backward`, and csrc/cell.h holds the same lines in C++ (`variant_cell_forward`,
`variant_cell_backward`). The labels are bptt.py's; a variant's lines carry its name.

Forward, one step, for the rows of one direction (a_x = W x_t precomputed for all steps):

    (F1) h_in = m ⊙ h_{t-1}                            recurrent dropout: one mask m per sequence
         a_h  = U h_in
         z    = a_x + a_h + b                          plain
         z    = LN(a_x) γ_x + LN(a_h) γ_h + b          layer_norm: LN(a) = (a - mean a) / std a
    (F2) i    = σ(z_i + p_i ⊙ c_{t-1})                 peephole adds p_i ⊙ c_{t-1}; NIG: i = 1
         f    = σ(z_f + p_f ⊙ c_{t-1})                 NFG: f = 1; coupled (CIFG): f = 1 - i
         g    = tanh(z_g)                              NIAF: g = z_g
    (F3) ĉ    = f ⊙ c_{t-1} + i ⊙ g
         c_t  = ζ_c ⊙ c_{t-1} + (1 - ζ_c) ⊙ ĉ          zoneout (ζ_c = 0 without)
    (F4) o    = σ(z_o + p_o ⊙ c_t)                     NOG: o = 1
         s    = c_t                                    plain
         s    = LN(c_t) γ_c + β_c                      layer_norm
         a    = tanh(s)                                NOAF: a = s
         r    = o ⊙ a
    (F5) ĥ    = r  (or W_hr r with a projection)
         h_t  = ζ_h ⊙ h_{t-1} + (1 - ζ_h) ⊙ ĥ          zoneout (ζ_h = 0 without)
    (F6) y_t  = h_t

Backward, the same lines in reverse, dh_t and dc the gradients reaching h_t and c_t:

    (B6) dh_t += dL/dy_t
    (B5) dĥ = (1 - ζ_h) dh_t;  dh_{t-1} ← ζ_h dh_t;  dr = dĥ (or dĥ W_hr; dW_hr += dĥᵀ r)
    (B4) do = dr ⊙ a;  ds = dr ⊙ o ⊙ (1 - a²) (NOAF: dr ⊙ o)
         dc_t += ds  (layer_norm: dc_t += LN'(ds γ_c), dγ_c += ds ⊙ LN(c_t), dβ_c += ds)
         dz_o = do ⊙ o (1 - o) (NOG: 0);  dc_t += dz_o ⊙ p_o;  dp_o += dz_o ⊙ c_t
    (B3) dĉ = (1 - ζ_c) dc_t;  dc_{t-1} ← ζ_c dc_t + dĉ ⊙ f
         di = dĉ ⊙ g;  df = dĉ ⊙ c_{t-1};  dg = dĉ ⊙ i;  coupled: di -= df, df = 0
    (B2) dz_i = di ⊙ i (1 - i) (NIG: 0);  dz_f = df ⊙ f (1 - f) (NFG, coupled: 0)
         dz_g = dg ⊙ (1 - g²) (NIAF: dg)
         dc_{t-1} += dz_i ⊙ p_i + dz_f ⊙ p_f;  dp_i += dz_i ⊙ c_{t-1};  dp_f += dz_f ⊙ c_{t-1}
    (B1) da_x = dz, da_h = dz  (layer_norm: da = LN'(dz γ), dγ += dz ⊙ LN(a), each side)
         dh_{t-1} += m ⊙ (da_h U);  over all steps: dx = da_x W, dW = Σ da_xᵀ x_t,
         dU = Σ da_hᵀ h_in, db = Σ dz

with LN'(dy) = (dy - mean dy - LN(a) mean(dy ⊙ LN(a))) / std a, the derivative of LN at a.

Refused: coupled with the ablations of the input or the forget gate (f = 1 - i needs both gates), and
forget_bias with coupled or with no forget gate (there is no forget-gate bias then).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from lstmbyhand.nn import masks as random_masks

ABLATIONS = ("input_gate", "forget_gate", "output_gate", "input_activation", "output_activation")
LN_EPS = 1e-5  # torch.nn.LayerNorm's

# bit flags of a variant, as the compiled kernels read them (csrc/cell.h, VariantFlags)
PEEPHOLE, COUPLED, LAYER_NORM = 1, 2, 4
NO_FLAG = dict(zip(ABLATIONS, (8, 16, 32, 64, 128), strict=True))


@dataclass(frozen=True)
class Variant:
    """Which variant of the cell: all off is the plain LSTM (torch.nn.LSTM's)."""

    peephole: bool = False
    coupled: bool = False
    layer_norm: bool = False
    ablate: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("peephole", "coupled", "layer_norm"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"{name}: expected a bool, got {type(getattr(self, name)).__name__}"
                )
        if isinstance(self.ablate, str) or not all(isinstance(a, str) for a in self.ablate):
            raise TypeError(
                f"ablate: expected a tuple of names from {ABLATIONS}, got {self.ablate!r}"
            )
        unknown = [a for a in self.ablate if a not in ABLATIONS]
        if unknown:
            raise ValueError(f"ablate: expected names from {ABLATIONS}, got {unknown[0]!r}")
        object.__setattr__(self, "ablate", tuple(a for a in ABLATIONS if a in self.ablate))
        gates = [a for a in self.ablate if a in ("input_gate", "forget_gate")]
        if self.coupled and gates:
            raise ValueError(
                f"coupled=True with ablate={gates[0]!r}: the coupled forget gate f = 1 - i needs "
                "both the input and the forget gate"
            )

    @property
    def flags(self) -> int:
        """The variant as the compiled kernels' bit flags."""
        bits = PEEPHOLE * self.peephole | COUPLED * self.coupled | LAYER_NORM * self.layer_norm
        return bits | sum(NO_FLAG[a] for a in self.ablate)

    @property
    def plain(self) -> bool:
        return self.flags == 0

    def has_forget_bias(self) -> bool:
        """Whether the forget gate has a bias of its own (not coupled, not removed)."""
        return not self.coupled and "forget_gate" not in self.ablate

    def extra_shapes(self, H: int) -> dict[str, tuple[int, ...]]:
        """The parameters a layer direction has beyond nn.LSTM's, by name (without `_l{k}`)."""
        shapes: dict[str, tuple[int, ...]] = {}
        if self.peephole:
            shapes["weight_peephole"] = (3 * H,)  # [p_i; p_f; p_o]
        if self.layer_norm:
            shapes |= {"ln_weight_ih": (4 * H,), "ln_weight_hh": (4 * H,)}  # γ_x, γ_h
            shapes |= {"ln_weight_c": (H,), "ln_bias_c": (H,)}  # γ_c, β_c
        return shapes


class VariantWeights(NamedTuple):
    """A layer direction's parameters for the variant kernels (absent ones None), in their order."""

    weight_ih: Tensor  # (4H, I)
    weight_hh: Tensor  # (4H, P)
    bias: Tensor | None = None  # (4H,) b_ih + b_hh
    weight_hr: Tensor | None = None  # (P, H)
    weight_peephole: Tensor | None = None  # (3H,) p_i, p_f, p_o
    ln_weight_ih: Tensor | None = None  # (4H,) γ_x
    ln_weight_hh: Tensor | None = None  # (4H,) γ_h
    ln_weight_c: Tensor | None = None  # (H,) γ_c
    ln_bias_c: Tensor | None = None  # (H,) β_c


class Masks(NamedTuple):
    """The regularizers' masks of one layer direction (None: not used), drawn by `CellOptions.masks`."""

    recurrent: Tensor | None = None  # (B, P) m, 0 or 1/(1-p): recurrent dropout
    zone_c: Tensor | None = None  # (T, B, H) ζ_c: 1 keeps c_{t-1}
    zone_h: Tensor | None = None  # (T, B, P) ζ_h: 1 keeps h_{t-1}


def _probability(name: str, value: object, below_one: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0 <= value < 1 if below_one else 0 <= value <= 1):  # type: ignore[operator]
        expected = "[0, 1)" if below_one else "[0, 1]"
        raise ValueError(f"{name}: expected a probability in {expected}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CellOptions:
    """The keyword options of `LSTM` / `LSTMCell` beyond nn.LSTM's, checked: the variant, the
    forget-gate bias at initialization and the two regularizers. All defaults: nn.LSTM."""

    variant: Variant = Variant()
    forget_bias: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: tuple[float, float] = (0.0, 0.0)  # (p_h, p_c)

    @classmethod
    def of(
        cls, peephole: bool = False, coupled: bool = False, layer_norm: bool = False,
        forget_bias: float = 0.0, recurrent_dropout: float = 0.0,
        zoneout: float | tuple[float, float] = 0.0, ablate: tuple[str, ...] = (),
    ) -> CellOptions:  # fmt: skip
        """The options from the constructors' keywords, refusing what cannot be built."""
        variant = Variant(
            peephole, coupled, layer_norm, ablate if isinstance(ablate, str) else tuple(ablate)
        )
        if not isinstance(forget_bias, (int, float)) or isinstance(forget_bias, bool):
            raise TypeError(f"forget_bias: expected a number, got {type(forget_bias).__name__}")
        if forget_bias != 0 and not variant.has_forget_bias():
            why = "coupled=True (f = 1 - i)" if variant.coupled else "ablate='forget_gate' (f = 1)"
            raise ValueError(f"forget_bias={forget_bias} with {why}: the forget gate has no bias")
        p_rec = _probability("recurrent_dropout", recurrent_dropout, below_one=True)
        pair = zoneout if isinstance(zoneout, (tuple, list)) else (zoneout, zoneout)
        if len(pair) != 2:
            raise ValueError(f"zoneout: expected a probability or (p_h, p_c), got {zoneout!r}")
        p_h, p_c = (_probability("zoneout", p, below_one=False) for p in pair)
        return cls(variant, float(forget_bias), p_rec, (p_h, p_c))

    @property
    def regularized(self) -> bool:
        return self.recurrent_dropout > 0 or self.zoneout != (0.0, 0.0)

    @property
    def plain(self) -> bool:
        """Whether the cell is nn.LSTM's (forget_bias is an initialization only)."""
        return self.variant.plain and not self.regularized

    def non_defaults(self) -> dict[str, object]:
        """The keywords that differ from their defaults, as given to the constructor."""
        v = self.variant
        given: dict[str, object] = {
            "peephole": v.peephole, "coupled": v.coupled, "layer_norm": v.layer_norm,
            "forget_bias": self.forget_bias, "recurrent_dropout": self.recurrent_dropout,
            "zoneout": self.zoneout if self.zoneout[0] != self.zoneout[1] else self.zoneout[0],
            "ablate": v.ablate,
        }  # fmt: skip
        return {k: value for k, value in given.items() if value not in (False, 0.0, ())}

    def initialize(self, params: Mapping[str, Tensor], H: int) -> None:
        """After nn.LSTM's uniform init of one layer direction's `params` (by name without suffix):
        the rows of removed gates zeroed (they get no gradient), b_ih's forget block = forget_bias
        and b_hh's = 0, layer-norm gains 1 and biases 0."""
        v = self.variant
        with torch.no_grad():
            removed = {"input_gate": 0, "forget_gate": 1, "output_gate": 3}
            blocks = [removed[a] for a in v.ablate if a in removed] + [1] * v.coupled
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                for q in blocks:
                    if name in params:
                        params[name][q * H : (q + 1) * H].zero_()
            if self.forget_bias != 0 and "bias_ih" in params:
                params["bias_ih"][H : 2 * H].fill_(self.forget_bias)
                params["bias_hh"][H : 2 * H].zero_()
            for name in ("ln_weight_ih", "ln_weight_hh", "ln_weight_c"):
                if name in params:
                    params[name].fill_(1.0)
            if "ln_bias_c" in params:
                params["ln_bias_c"].zero_()

    def masks(self, like: Tensor, T: int, B: int, H: int, P: int, training: bool) -> Masks:
        """The masks of one sequence. In training, one seed from torch's RNG (`masks.draw_seed`) and
        one counter-based stream u_k of it (`masks.py`), laid out in this order: m = [u < 1 - p] /
        (1 - p) (B, P), then ζ_c = [u < p_c] (T, B, H), then ζ_h = [u < p_h] (T, B, P), each at every
        step; in evaluation no dropout and zoneout's expectation ζ = p."""
        p_h, p_c = self.zoneout
        opts: dict = {"dtype": like.dtype, "device": like.device}
        seed = random_masks.draw_seed() if training and self.regularized else 0
        offset = 0

        def bernoulli(shape: tuple[int, ...], p: float, value: float = 1.0) -> Tensor:
            nonlocal offset  # value with probability p, else 0; the next stretch of the stream
            mask = random_masks.keyed_bernoulli(shape, seed, offset, p, value, **opts)
            offset += mask.numel()
            return mask

        recurrent = None
        if training and self.recurrent_dropout > 0:
            keep = 1.0 - self.recurrent_dropout
            recurrent = bernoulli((B, P), keep, 1.0 / keep)

        def zone(p: float, width: int) -> Tensor | None:
            if p == 0:
                return None
            if training:
                return bernoulli((T, B, width), p)
            return torch.full((T, B, width), p, **opts)

        zone_c = zone(p_c, H)
        return Masks(recurrent, zone_c, zone(p_h, P))


class Saved(NamedTuple):
    """What one step keeps for its derivative (rows of the step; LN entries None without it)."""

    gates: Tensor  # (n, 4H) i, f, g, o as used (1 where ablated)
    h_in: Tensor  # (n, P) m ⊙ h_{t-1}
    c_prev: Tensor  # (n, H) c_{t-1}
    c_t: Tensor  # (n, H)
    act: Tensor  # (n, H) a = tanh(s) (NOAF: s)
    xhat_x: Tensor | None  # (n, 4H) LN(a_x)
    rstd_x: Tensor | None  # (n, 1) 1 / std(a_x)
    xhat_h: Tensor | None  # (n, 4H) LN(a_h)
    rstd_h: Tensor | None  # (n, 1)
    chat: Tensor | None  # (n, H) LN(c_t)
    rstd_c: Tensor | None  # (n, 1)


def layer_norm(a: Tensor) -> tuple[Tensor, Tensor]:
    """LN over the last dimension, without gain: a (n, K) -> (a - mean) / std (n, K), 1/std (n, 1)."""
    mean = a.mean(dim=1, keepdim=True)
    centered = a - mean
    rstd = torch.rsqrt((centered * centered).mean(dim=1, keepdim=True) + LN_EPS)
    return centered * rstd, rstd


def layer_norm_backward(dy: Tensor, xhat: Tensor, rstd: Tensor) -> Tensor:
    """LN'(dy): the gradient of `layer_norm`'s input from that of its output (both (n, K))."""
    mean_dy = dy.mean(dim=1, keepdim=True)
    mean_dy_xhat = (dy * xhat).mean(dim=1, keepdim=True)
    return (dy - mean_dy - xhat * mean_dy_xhat) * rstd


def _ones(like: Tensor) -> Tensor:
    return torch.ones_like(like)


def cell_forward(
    v: Variant, w: VariantWeights, a_x: Tensor, h: Tensor, c: Tensor,
    m: Tensor | None, zeta_c: Tensor | None, zeta_h: Tensor | None,
) -> tuple[Tensor, Tensor, Saved]:  # fmt: skip
    """F1-F6 of one step (module docstring): a_x = W x_t (n, 4H), h (n, P), c (n, H), the masks'
    rows of this step -> h_t (n, P), c_t (n, H), and what `cell_backward` needs. Torch ops only:
    autograd differentiates it in the readable loop."""
    abl = v.ablate
    h_in = h if m is None else m * h  # (n, P) F1: recurrent dropout
    a_h = h_in @ w.weight_hh.T  # (n, 4H) F1
    xhat_x = rstd_x = xhat_h = rstd_h = chat = rstd_c = None
    if v.layer_norm:
        assert w.ln_weight_ih is not None and w.ln_weight_hh is not None
        xhat_x, rstd_x = layer_norm(a_x)
        xhat_h, rstd_h = layer_norm(a_h)
        z = xhat_x * w.ln_weight_ih + xhat_h * w.ln_weight_hh  # F1: layer_norm
    else:
        z = a_x + a_h  # F1
    if w.bias is not None:
        z = z + w.bias
    z_i, z_f, z_g, z_o = z.chunk(4, dim=1)  # each (n, H)
    if v.peephole:
        assert w.weight_peephole is not None
        p_i, p_f, p_o = w.weight_peephole.chunk(3)  # each (H,)
        z_i, z_f = z_i + p_i * c, z_f + p_f * c  # F2: peephole
    i = _ones(z_i) if "input_gate" in abl else torch.sigmoid(z_i)  # F2 (NIG)
    f = torch.sigmoid(z_f)  # F2
    f = 1 - i if v.coupled else _ones(z_f) if "forget_gate" in abl else f  # F2 (CIFG, NFG)
    g = z_g if "input_activation" in abl else torch.tanh(z_g)  # F2 (NIAF)
    c_t = f * c + i * g  # F3
    if zeta_c is not None:
        c_t = zeta_c * c + (1 - zeta_c) * c_t  # F3: zoneout
    if v.peephole:
        z_o = z_o + p_o * c_t  # F4: peephole
    o = _ones(z_o) if "output_gate" in abl else torch.sigmoid(z_o)  # F4 (NOG)
    s = c_t  # F4
    if v.layer_norm:
        chat, rstd_c = layer_norm(c_t)
        assert w.ln_weight_c is not None and w.ln_bias_c is not None
        s = chat * w.ln_weight_c + w.ln_bias_c  # F4: layer_norm
    act = s if "output_activation" in abl else torch.tanh(s)  # F4 (NOAF)
    r = o * act  # (n, H) F4
    h_t = r if w.weight_hr is None else r @ w.weight_hr.T  # (n, P) F5
    if zeta_h is not None:
        h_t = zeta_h * h + (1 - zeta_h) * h_t  # F5: zoneout
    gates = torch.cat([i, f, g, o], dim=1)  # (n, 4H)
    saved = Saved(gates, h_in, c, c_t, act, xhat_x, rstd_x, xhat_h, rstd_h, chat, rstd_c)
    return h_t, c_t, saved


class StepGrads(NamedTuple):
    """`cell_backward`'s results for one step's rows."""

    dz: Tensor  # (n, 4H) pre-activation gradients (db = Σ dz)
    da_h: Tensor  # (n, 4H) gradient of a_h = U h_in (dz without layer norm)
    dh_prev: Tensor  # (n, P) dh_{t-1}
    dc_prev: Tensor  # (n, H) dc_{t-1}
    dh_hat: Tensor  # (n, P) dĥ (for dW_hr = Σ dĥᵀ r)
    d_peephole: Tensor | None  # (3H,) this step's share
    d_ln_c: tuple[Tensor, Tensor] | None  # (H,), (H,) dγ_c, dβ_c shares


def cell_backward(
    v: Variant, w: VariantWeights, s: Saved, dh_t: Tensor, dc: Tensor,
    m: Tensor | None, zeta_c: Tensor | None, zeta_h: Tensor | None,
) -> StepGrads:  # fmt: skip
    """B5-B1 of one step (module docstring), the derivative of `cell_forward` line by line:
    dh_t (n, P) (B6 done: later steps plus the output's), dc (n, H) the gradient reaching c_t."""
    abl = v.ablate
    H = dc.shape[1]
    i, f, g, o = s.gates.chunk(4, dim=1)  # each (n, H)
    dh_hat = dh_t if zeta_h is None else (1 - zeta_h) * dh_t  # B5: zoneout
    dh_prev = torch.zeros_like(dh_t) if zeta_h is None else zeta_h * dh_t  # B5: zoneout
    dr = dh_hat if w.weight_hr is None else dh_hat @ w.weight_hr  # (n, H) B5
    d_o = dr * s.act  # B4
    ds = dr * o if "output_activation" in abl else dr * o * (1 - s.act * s.act)  # B4 (NOAF)
    d_ln_c = None
    if v.layer_norm:
        assert s.chat is not None and s.rstd_c is not None and w.ln_weight_c is not None
        d_ln_c = ((ds * s.chat).sum(0), ds.sum(0))  # B4: dγ_c, dβ_c
        ds = layer_norm_backward(ds * w.ln_weight_c, s.chat, s.rstd_c)  # B4: layer_norm
    dc_t = dc + ds  # B4
    dz_o = torch.zeros_like(o) if "output_gate" in abl else d_o * o * (1 - o)  # B4 (NOG)
    if v.peephole:
        assert w.weight_peephole is not None
        p_i, p_f, p_o = w.weight_peephole.chunk(3)
        dc_t = dc_t + dz_o * p_o  # B4: peephole
    dc_hat = dc_t if zeta_c is None else (1 - zeta_c) * dc_t  # B3: zoneout
    dc_prev = dc_hat * f if zeta_c is None else zeta_c * dc_t + dc_hat * f  # B3
    di, df, dg = dc_hat * g, dc_hat * s.c_prev, dc_hat * i  # B3
    if v.coupled:
        di, df = di - df, torch.zeros_like(df)  # B3: f = 1 - i
    dz_i = torch.zeros_like(i) if "input_gate" in abl else di * i * (1 - i)  # B2 (NIG)
    no_f = v.coupled or "forget_gate" in abl
    dz_f = torch.zeros_like(f) if no_f else df * f * (1 - f)  # B2 (NFG, CIFG)
    dz_g = dg if "input_activation" in abl else dg * (1 - g * g)  # B2 (NIAF)
    d_peephole = None
    if v.peephole:
        dc_prev = dc_prev + dz_i * p_i + dz_f * p_f  # B2: peephole
        d_peephole = torch.cat(
            [(dz_i * s.c_prev).sum(0), (dz_f * s.c_prev).sum(0), (dz_o * s.c_t).sum(0)]
        )  # (3H,) B2, B4: dp_i, dp_f, dp_o
    dz = torch.cat([dz_i, dz_f, dz_g, dz_o], dim=1)  # (n, 4H)
    da_h = dz  # B1
    if v.layer_norm:
        assert s.xhat_h is not None and s.rstd_h is not None and w.ln_weight_hh is not None
        da_h = layer_norm_backward(dz * w.ln_weight_hh, s.xhat_h, s.rstd_h)  # B1: layer_norm
    dh_rec = da_h @ w.weight_hh  # (n, P) B1
    dh_prev = dh_prev + (dh_rec if m is None else m * dh_rec)  # B1: recurrent dropout
    assert dz.shape[1] == 4 * H
    return StepGrads(dz, da_h, dh_prev, dc_prev, dh_hat, d_peephole, d_ln_c)
