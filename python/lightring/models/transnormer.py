"""TransNormerLLM (Qin et al. 2023) on lightring: the model of csrc/model/transnormer.h, the
one lightring-train trains, with the same parameter names, so its checkpoints load as they are.

With x [B, N, d], SRMSNorm(x) = x / sqrt(mean_d(x²) + eps) (no weight, fp32), layers l = 0 … L−1:

    h_0    = Embed(ids) · (√d when scale_embedding)
    h'     = h_l + TokenMixer_l(SRMSNorm(h_l))
    h_l+1  = h' + ChannelMixer_l(SRMSNorm(h'))
    logits = LMHead(SRMSNorm(h_L))                                    [B, N, V]

TokenMixer_l is lightring.nn.LightningAttention(d, H, head_dim, gate=True, norm=True,
activation="silu", decay="slopes", layer_idx=l, num_layers=L, scale=1): [q k v u] = x·W_qkvu,
SiLU on q and k, per-head rate slopes(H)·(1 − l/(L−1) + 1e-5), out = W_out(u ⊙ SRMSNorm(o)).
ChannelMixer is the SGLU W3(W1 x ⊙ W2 x). The LM head is not tied to the embedding.

Parameter names (those of the C++ modules and of lightring-train checkpoints):
    embed.weight, layers.<l>.token_mixer.{qkvu_proj,out_proj}.weight,
    layers.<l>.channel_mixer.{w1,w2,w3}.weight, lm_head.weight
and the buffers layers.<l>.token_mixer.decay (computed from the config; checkpoints omit them).

Generation uses the recurrent form (csrc/model/generate.h): per layer a [B, H, dh, dh] fp32 state,
one update S = λ·S + kᵀv and readout o = q·S per token; the prefix is never recomputed.
"""
import dataclasses
import math

import torch
from torch import nn

from ..nn import LightningAttention, SimpleRMSNorm

CHECKPOINT_FORMAT = "lightring-train/1"

# csrc/model/config.cpp: (d_model, num_layers, num_heads, ffn_dim or 0 for the default)
PRESETS = {"tiny": (64, 2, 4, 128), "125m": (768, 12, 12, 0), "350m": (1024, 24, 16, 0),
           "1b": (2048, 24, 16, 0)}


@dataclasses.dataclass
class TransNormerConfig:
    """The fields of csrc/model/config.h's ModelConfig (and of a checkpoint's `config`)."""
    vocab_size: int
    d_model: int
    num_layers: int
    num_heads: int
    head_dim: int = 0          # 0: d_model / num_heads
    ffn_dim: int = 0           # 0: ceil(8·d/3) rounded up to a multiple of 64
    scale_embedding: bool = True
    norm_eps: float = 1e-6
    init_std: float = 0.02
    preset: str = "custom"

    @classmethod
    def from_preset(cls, name, vocab_size, **overrides):
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
        d, layers, heads, ffn = PRESETS[name]
        fields = dict(vocab_size=vocab_size, d_model=d, num_layers=layers, num_heads=heads,
                      ffn_dim=ffn, preset=name)
        fields.update(overrides)
        return cls(**fields)

    @property
    def resolved_head_dim(self):
        return self.head_dim if self.head_dim > 0 else self.d_model // self.num_heads

    @property
    def resolved_ffn_dim(self):
        if self.ffn_dim > 0:
            return self.ffn_dim
        f = (8 * self.d_model + 2) // 3  # ceil(8d/3)
        return (f + 63) // 64 * 64

    def validate(self):
        for name in ("vocab_size", "d_model", "num_layers", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int (got {value!r})")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 (got {self.vocab_size})")
        if self.head_dim == 0 and self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads "
                             f"({self.num_heads}), or set head_dim")
        if not 1 <= self.resolved_head_dim <= 256:
            raise ValueError(f"head_dim must be in 1..256 (got {self.resolved_head_dim})")
        if self.resolved_ffn_dim < 1:
            raise ValueError(f"ffn_dim must be >= 1 (got {self.ffn_dim})")

    def parameter_count(self):
        """2·V·d + L·(5·H·dh·d + 3·d·f), as csrc/model/config.h."""
        hd = self.num_heads * self.resolved_head_dim
        return 2 * self.vocab_size * self.d_model + self.num_layers * (
            5 * hd * self.d_model + 3 * self.d_model * self.resolved_ffn_dim)


class ChannelMixer(nn.Module):
    """SGLU: W3(W1 x ⊙ W2 x), no activation, no biases."""

    def __init__(self, d_model, ffn_dim, device=None, dtype=None):
        super().__init__()
        f = {"device": device, "dtype": dtype}
        self.w1 = nn.Linear(d_model, ffn_dim, bias=False, **f)
        self.w2 = nn.Linear(d_model, ffn_dim, bias=False, **f)
        self.w3 = nn.Linear(ffn_dim, d_model, bias=False, **f)

    def forward(self, x):
        return self.w3(self.w1(x) * self.w2(x))


def _rows(cu_seqlens, batch):
    """cu_seqlens as the model takes it: None, one tensor (B = 1) or one per row."""
    if cu_seqlens is None or isinstance(cu_seqlens, torch.Tensor):
        return cu_seqlens, False
    rows = list(cu_seqlens)
    if len(rows) != batch:
        raise ValueError(f"cu_seqlens: one offsets tensor per row of ids (got {len(rows)} for "
                         f"B = {batch})")
    return rows, True


class Block(nn.Module):
    """h' = x + TokenMixer(SRMSNorm(x)); out = h' + ChannelMixer(SRMSNorm(h'))."""

    def __init__(self, config, layer_idx, group=None, schedule="auto", exchange=None,
                 device=None, dtype=None):
        super().__init__()
        c = config
        self.token_mixer = LightningAttention(
            c.d_model, c.num_heads, c.resolved_head_dim, bias=False, gate=True, norm=True,
            activation="silu", decay="slopes", layer_idx=layer_idx, num_layers=c.num_layers,
            scale=1.0, group=group, schedule=schedule, exchange=exchange, device=device,
            dtype=dtype)
        self.token_mixer.norm.eps = c.norm_eps
        self.channel_mixer = ChannelMixer(c.d_model, c.resolved_ffn_dim, device, dtype)
        self.norm = SimpleRMSNorm(c.norm_eps)

    def forward(self, x, cu_seqlens=None, state=None, return_state=False, group=None):
        rows, per_row = _rows(cu_seqlens, x.shape[0])
        y = self.norm(x)
        if per_row:
            if state is not None or return_state:
                raise ValueError("states are not taken with per-row cu_seqlens; pass one packed "
                                 "row (B = 1) with one cu_seqlens tensor")
            mixed = torch.cat([self.token_mixer(y[r:r + 1], group=group, cu_seqlens=rows[r])
                               for r in range(x.shape[0])], 0)
            final = None
        elif return_state:
            mixed, final = self.token_mixer(y, initial_state=state, output_final_state=True,
                                            group=group, cu_seqlens=rows)
        else:
            mixed = self.token_mixer(y, initial_state=state, group=group, cu_seqlens=rows)
        h = x + mixed
        h = h + self.channel_mixer(self.norm(h))
        return (h, final) if return_state else h

    def step(self, x, state):
        """The recurrent form at one token (csrc/model/generate.cpp): x [B, d], state
        [B, H, dh, dh] fp32 -> (x', state'); the state given is not modified."""
        tm = self.token_mixer
        b, h, dh = x.shape[0], tm.num_heads, tm.head_dim
        parts = tm.qkvu_proj(self.norm(x)).split(tm.hidden, dim=-1)
        q = nn.functional.silu(parts[0]).view(b, h, 1, dh).float()
        k = nn.functional.silu(parts[1]).view(b, h, dh, 1).float()
        v = parts[2].reshape(b, h, 1, dh).float()
        lam = torch.exp(-tm.decay.float()).view(1, h, 1, 1) if tm.decay is not None else 1.0
        state = lam * state + k * v
        o = (tm.scale * torch.matmul(q, state)).view(b, h * dh).to(x.dtype)
        x = x + tm.out_proj(parts[3] * tm.norm(o))
        x = x + self.channel_mixer(self.norm(x))
        return x, state


class TransNormerLM(nn.Module):
    """The TransNormerLLM language model of lightring-train (csrc/model/transnormer.h).

    group: a torch.distributed group over which the sequence is sharded (ids are then this rank's
    contiguous shard, lightring.distributed.shard; every token mixer exchanges its states over
    it), or None; forward(group=) overrides it per call.
    """

    def __init__(self, config, group=None, schedule="auto", exchange=None, device=None,
                 dtype=None):
        super().__init__()
        config.validate()
        self.config = config
        self.group = group
        f = {"device": device, "dtype": dtype}
        self.embed = nn.Embedding(config.vocab_size, config.d_model, **f)
        self.layers = nn.ModuleList(Block(config, l, group, schedule, exchange, **f)
                                    for l in range(config.num_layers))
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False, **f)
        self.norm = SimpleRMSNorm(config.norm_eps)
        with torch.no_grad():  # normal(0, init_std) for every weight, as the C++ model
            for p in self.parameters():
                p.normal_(0.0, config.init_std)

    def embed_tokens(self, ids):
        h = self.embed(ids)
        return h * math.sqrt(self.config.d_model) if self.config.scale_embedding else h

    def forward(self, ids, cu_seqlens=None, states=None, return_states=False, group=None):
        """ids [B, N] int64 (this rank's shard under a group) -> logits [B, N, V].

        cu_seqlens: None; the document offsets of a packed row (B = 1); or a list of B offsets
        tensors, row b then running alone with its own documents (as lightring-train's
        --documents on). states: None or per layer the initial state ([B, H, dh, dh] fp32, or
        [N_docs, H, dh, dh] with cu_seqlens); return_states=True returns (logits, final
        states per layer)."""
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"ids must be a [B, N] int64 tensor (got "
                             f"{_describe(ids)})")
        if states is not None and len(states) != len(self.layers):
            raise ValueError(f"states: one per layer ({len(self.layers)}), got {len(states)}")
        group = self.group if group is None else group
        h = self.embed_tokens(ids)
        finals = []
        for l, block in enumerate(self.layers):
            s0 = None if states is None else states[l]
            if return_states:
                h, s = block(h, cu_seqlens, s0, True, group)
                finals.append(s)
            else:
                h = block(h, cu_seqlens, s0, False, group)
        logits = self.lm_head(self.norm(h))
        return (logits, finals) if return_states else logits

    def loss(self, ids, targets, cu_seqlens=None, group=None, reduction="mean"):
        """Cross-entropy of the next-token targets [B, N] (-1: ignored, lightring-train's
        kIgnoreTarget): "mean" over the counted targets, or "sum" (then also the count)."""
        logits = self(ids, cu_seqlens=cu_seqlens, group=group)
        total = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                            targets.reshape(-1), ignore_index=-1,
                                            reduction="sum")
        count = (targets != -1).sum()
        if reduction == "sum":
            return total, int(count)
        # A tensor count, not int(): torch.compile(fullgraph=True) traces it without a break.
        return total / count.clamp(min=1)

    def initial_states(self, batch, device=None):
        """Zero decoding states: per layer [B, H, dh, dh] fp32."""
        c = self.config
        dh = c.resolved_head_dim
        device = self.embed.weight.device if device is None else device
        return [torch.zeros(batch, c.num_heads, dh, dh, device=device)
                for _ in range(c.num_layers)]

    @torch.no_grad()
    def decode_step(self, ids, states):
        """The recurrent form at one position: ids [B] int64 -> (logits [B, V], new states)."""
        x = self.embed_tokens(ids)
        out = []
        for block, s in zip(self.layers, states):
            x, s = block.step(x, s)
            out.append(s)
        return self.lm_head(self.norm(x)), out

    @torch.no_grad()
    def generate(self, prompt_ids, max_new_tokens, temperature=0.8, top_k=0, seed=0,
                 prefill="parallel", generator=None):
        """Continues prompt_ids (a list of ints, or [P] / [B, P] int64) by max_new_tokens tokens;
        returns the new tokens, [B, max_new_tokens] int64 (a list for a list prompt).

        The prompt goes through the model once (prefill="parallel": the chunked forward with the
        final states; "recurrent": token by token, as lightring-train's --generate), then each
        new token is one decode_step carrying the per-layer states: nothing is recomputed.
        temperature 0 is greedy; top_k > 0 samples among the k likeliest. The sampler is a
        torch CPU generator seeded by seed (or `generator`), drawn as lightring-train draws
        (softmax of logits / temperature, multinomial), so the same weights, prompt and seed
        give lightring-train's sample up to fp32 rounding of the logits."""
        as_list = not isinstance(prompt_ids, torch.Tensor)
        ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=self.embed.weight.device)
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2 or ids.shape[1] < 1:
            raise ValueError(f"prompt_ids must hold at least one token, as [P] or [B, P] "
                             f"(got shape {list(ids.shape)})")
        if bool((ids < 0).any()) or bool((ids >= self.config.vocab_size).any()):
            raise ValueError(f"prompt_ids must be in [0, {self.config.vocab_size})")
        if max_new_tokens < 0 or temperature < 0 or top_k < 0:
            raise ValueError("max_new_tokens, temperature and top_k must be >= 0")
        if prefill not in ("parallel", "recurrent"):
            raise ValueError(f"prefill must be 'parallel' or 'recurrent' (got {prefill!r})")
        if generator is None:
            generator = torch.Generator().manual_seed(seed)
        was_training = self.training
        self.eval()
        try:
            if prefill == "parallel":
                logits, states = self(ids, states=None, return_states=True, group=None) \
                    if self.group is None else self._prefill_recurrent(ids)
                logits = logits[:, -1]
            else:
                logits, states = self._prefill_recurrent(ids)
            out = []
            for _ in range(max_new_tokens):
                nxt = _sample(logits.float(), temperature, top_k, generator)
                out.append(nxt)
                logits, states = self.decode_step(nxt, states)
        finally:
            self.train(was_training)
        tokens = torch.stack(out, 1) if out else ids.new_zeros(ids.shape[0], 0)
        return tokens[0].tolist() if as_list else tokens

    def _prefill_recurrent(self, ids):
        states = self.initial_states(ids.shape[0])
        for t in range(ids.shape[1]):
            logits, states = self.decode_step(ids[:, t], states)
        return logits, states

    @classmethod
    def from_checkpoint(cls, path, map_location="cpu", **kwargs):
        """The model of a lightring-train checkpoint (a ckpt-*.pt file, or a --save-dir whose
        `latest` names one). kwargs go to the constructor (group=, device=, ...)."""
        model, _ = load_checkpoint(path, map_location=map_location, **kwargs)
        return model


def _sample(logits, temperature, top_k, generator):
    """logits [B, V] fp32 -> [B] int64, as csrc/model/generate.cpp samples."""
    if temperature == 0:
        return logits.argmax(-1)
    scores = logits / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values.min(-1, keepdim=True).values
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, -1)
    return torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(logits.device)


def _describe(t):
    if isinstance(t, torch.Tensor):
        return f"{t.dim()}-D {t.dtype} of shape {list(t.shape)}"
    return type(t).__name__


def _resolve(path):
    import os
    if os.path.isdir(path):
        latest = os.path.join(path, "latest")
        if not os.path.isfile(latest):
            raise FileNotFoundError(f"{path} is a folder without a 'latest' file (not a "
                                    "lightring-train --save-dir)")
        with open(latest) as f:
            name = f.read().strip()
        return os.path.join(path, os.path.basename(name))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path


def load_checkpoint(path, map_location="cpu", **kwargs):
    """Reads a lightring-train checkpoint (launch/train_checkpoint.h); returns (model, the
    checkpoint dict). Every model weight must be present with its shape; decay buffers are
    computed from the config (the file does not hold them)."""
    file = _resolve(path)
    ckpt = torch.load(file, map_location=map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{file} is not a lightring-train checkpoint (format {got!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    c = ckpt["config"]
    config = TransNormerConfig(
        vocab_size=int(c["vocab_size"]), d_model=int(c["d_model"]),
        num_layers=int(c["num_layers"]), num_heads=int(c["num_heads"]),
        head_dim=int(c["head_dim"]), ffn_dim=int(c["ffn_dim"]),
        scale_embedding=bool(c["scale_embedding"]), norm_eps=float(c["norm_eps"]),
        init_std=float(c["init_std"]), preset=str(c["preset"]))
    model = TransNormerLM(config, **kwargs)
    weights = ckpt["model"]
    own = dict(model.named_parameters())
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise ValueError(f"{file}: the weights do not match the model of its config "
                         f"(missing {missing}, unexpected {unexpected})")
    with torch.no_grad():
        for name, p in own.items():
            w = weights[name]
            if tuple(w.shape) != tuple(p.shape):
                raise ValueError(f"{file}: {name} has shape {list(w.shape)}, the config gives "
                                 f"{list(p.shape)}")
            p.copy_(w)
    return model, ckpt
