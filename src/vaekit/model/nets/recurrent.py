"""Recurrent encoder and decoder for token sequences (text).

Encoder: token embedding -> bidirectional GRU/LSTM over the line (packed, so padding is
not read) -> the last forward and backward states -> a linear layer to (mu, logvar).

Decoder (Bowman et al. 2016): a GRU/LSTM language model conditioned on z twice: its initial
state is a linear function of z, and z is concatenated to every input embedding. Training
uses teacher forcing: it reads ``<s> t_1 .. t_n`` and outputs the logits of
``t_1 .. t_n </s>``. Two cures for posterior collapse live here: word dropout (inputs
replaced by ``<unk>`` with some probability, in training only) and the inputless decoder
(inputs always ``<unk>``, so everything it knows about the line comes from z).
Generation is greedy, sampling with a temperature, or beam search.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from ...tokens import BOS, EOS, PAD, UNK
from .mlp import GaussianHead

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RecurrentEncoder(nn.Module):
    def __init__(self, vocab: int, latent: int, embedding: int = 64, hidden: int = 256, cell: str = "gru",
                 extra: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding, padding_idx=PAD)
        self.rnn = CELLS[cell](embedding, hidden, batch_first=True, bidirectional=True)
        self.fc = GaussianHead(2 * hidden + extra, latent)

    @property
    def head(self) -> GaussianHead:
        """The last layer: hidden features -> (mu, logvar)."""
        return self.fc

    packed = True   # False after :meth:`unpack`

    def unpack(self) -> None:
        """From now on, :meth:`hidden` runs on the padded lines with index arithmetic instead of
        packing them, which a traced or exported graph can hold (packing needs the lengths on the
        host). For an exported copy: the one-way networks it adds share the weights, and the
        state dict names them twice."""
        rnn, nets = self.rnn, []
        for suffix in ("", "_reverse"):
            one = type(rnn)(rnn.input_size, rnn.hidden_size, batch_first=True).to(rnn.weight_ih_l0.device)
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                setattr(one, name, getattr(rnn, name + suffix))
            nets.append(one)
        self.directions = nn.ModuleList(nets)   # the two directions as one-way networks
        self.packed = False

    def hidden(self, x, cond=None):
        """The features the head reads: the last states of both directions [and the condition]."""
        lengths = (x != PAD).sum(1).clamp(min=1)
        if self.packed:
            seq = pack_padded_sequence(self.embed(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, h = self.rnn(seq)
            if isinstance(h, tuple):  # LSTM: (h, c)
                h = h[0]
            h = torch.cat([h[-2], h[-1]], -1)  # last layer, forward and backward
        else:
            h = self._last_states(x, lengths)
        if cond is not None:
            h = torch.cat([h, cond], -1)
        return h

    def _last_states(self, x, lengths):
        """The packed computation on padded lines: the forward direction's state at each line's
        last token, and the backward direction run over each line reversed within its length
        (padding stays after it), taken at the same place. The directions run as one-way
        networks holding the bidirectional one's weights."""
        e = self.embed(x)
        steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
        last = (lengths - 1).unsqueeze(1)
        flipped = torch.where(steps <= last, last - steps, steps)                      # (B, L)
        e_back = e.gather(1, flipped.unsqueeze(-1).expand_as(e))
        at_last = last.unsqueeze(-1).expand(-1, 1, self.rnn.hidden_size)
        forward, backward = self.directions
        h_f = forward(e)[0].gather(1, at_last)[:, 0]
        h_b = backward(e_back)[0].gather(1, at_last)[:, 0]
        return torch.cat([h_f, h_b], -1)


class RecurrentDecoder(nn.Module):
    """z (B, latent) and the target tokens x (B, L) -> logits (B, vocab, L)."""

    autoregressive = True

    def __init__(self, vocab: int, latent: int, length: int, embedding: int = 64, hidden: int = 256,
                 cell: str = "gru", word_dropout: float = 0.0, inputless: bool = False):
        super().__init__()
        self.vocab, self.length, self.cell = vocab, length, cell
        self.word_dropout, self.inputless = word_dropout, inputless
        self.embed = nn.Embedding(vocab, embedding, padding_idx=PAD)
        self.init = nn.Linear(latent, hidden * (2 if cell == "lstm" else 1))
        self.rnn = CELLS[cell](embedding + latent, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def initial_state(self, z):
        h = torch.tanh(self.init(z)).unsqueeze(0)
        return tuple(h.chunk(2, -1)) if self.cell == "lstm" else h

    def inputs(self, x):
        """<s> t_1 .. t_{L-1}, with word dropout in training or all <unk> for the inputless decoder."""
        inp = torch.cat([torch.full_like(x[:, :1], BOS), x[:, :-1]], 1)
        if self.inputless:
            inp = torch.where(inp == BOS, inp, torch.full_like(inp, UNK))
        elif self.training and self.word_dropout > 0:
            drop = (torch.rand(inp.shape, device=inp.device) < self.word_dropout) & (inp != BOS) & (inp != PAD)
            inp = torch.where(drop, torch.full_like(inp, UNK), inp)
        return inp

    def forward(self, z, x, repeats: int = 1):
        """Teacher-forced logits (R*B, vocab, L) of the lines x (B, L) under the latents z
        (R*B, latent), R = ``repeats`` latents a line (row j*B + i: the j-th latent of line i)."""
        if repeats > 1 and not self.training and not torch.is_grad_enabled():
            return self._repeated(z, x, repeats)
        if repeats > 1:
            x = x.repeat(repeats, 1)
        inp = self.inputs(x)
        e = self.embed(inp)
        h, _ = self.rnn(torch.cat([e, z.unsqueeze(1).expand(-1, e.shape[1], -1)], -1), self.initial_state(z))
        return self.out(h).transpose(1, 2)  # (B, vocab, L): the likelihood's (B, n_params, *shape)

    def _repeated(self, z, x, repeats):
        """:meth:`forward` for many latents a line (the k samples of an importance-sampled
        estimate) without repeating a line's own work. The input is [e_t; z], so its projection
        W_ih [e_t; z] = W_e e_t + W_z z: the embedding's part is computed once a line, the
        latent's once a sample, and only the recurrence runs over all R*B rows, step by step,
        with the network's own weights (the same equations as ``nn.GRU`` / ``nn.LSTM``)."""
        rnn, emb = self.rnn, self.embed.embedding_dim
        b, steps = x.shape
        w_ih, w_hh, b_ih, b_hh = rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
        gx = F.linear(self.embed(self.inputs(x)), w_ih[:, :emb], b_ih)        # (B, L, gates): once a line
        gz = F.linear(z, w_ih[:, emb:]).view(repeats, b, -1)                  # (R, B, gates): once a sample
        state = self.initial_state(z)
        h = (state[0] if self.cell == "lstm" else state)[0]
        c = state[1][0] if self.cell == "lstm" else None
        size = h.shape[1]
        out = torch.empty(h.shape[0], steps, size, dtype=h.dtype, device=h.device)
        w_hh_t = w_hh.t()
        for t in range(steps):
            gi = (gz + gx[:, t]).view(-1, gx.shape[-1])
            gh = torch.addmm(b_hh, h, w_hh_t)
            if c is None:   # GRU: r, u = sigmoid(...), n = tanh(i_n + r * h_n), h = n + u (h - n)
                ru = torch.sigmoid(gi[:, :2 * size] + gh[:, :2 * size])
                n = torch.tanh(torch.addcmul(gi[:, 2 * size:], ru[:, :size], gh[:, 2 * size:]))
                h = torch.addcmul(n, ru[:, size:], h - n)
            else:           # LSTM: gates i, f, g, o
                g = gi + gh
                ifo = torch.sigmoid(g[:, :2 * size])
                c = torch.addcmul(ifo[:, size:] * c, ifo[:, :size], torch.tanh(g[:, 2 * size:3 * size]))
                h = torch.sigmoid(g[:, 3 * size:]) * torch.tanh(c)
            out[:, t] = h
        return self.out(out).transpose(1, 2)

    def _step(self, z, tok, state):
        e = self.embed(tok).unsqueeze(1)
        h, state = self.rnn(torch.cat([e, z.unsqueeze(1)], -1), state)
        return F.log_softmax(self.out(h[:, 0]).float(), -1), state

    def _next_input(self, tok):
        return torch.full_like(tok, UNK) if self.inputless else tok

    @staticmethod
    def _reorder(state, idx):
        return tuple(s[:, idx] for s in state) if isinstance(state, tuple) else state[:, idx]

    @torch.no_grad()
    def generate(self, z, method: str = "greedy", temperature: float = 1.0, beam: int = 5,
                 max_length: int | None = None) -> torch.Tensor:
        """Decode token ids (B, L) from latents z (B, latent); padded with 0 after </s>.

        method: ``greedy`` (the most likely token at each step), ``sample`` (from the
        softmax at ``temperature``) or ``beam`` (beam search of width ``beam``, finished
        lines ranked by log-probability with the length penalty of Wu et al. 2016).
        """
        length = max_length or self.length
        if method == "beam":
            return self._beam(z, beam, length)
        b = z.shape[0]
        out = torch.zeros(b, length, dtype=torch.long, device=z.device)
        tok = torch.full((b,), BOS, dtype=torch.long, device=z.device)
        done = torch.zeros(b, dtype=torch.bool, device=z.device)
        state = self.initial_state(z)
        for t in range(length):
            logp, state = self._step(z, self._next_input(tok) if t else tok, state)
            logp[:, PAD] = logp[:, BOS] = -math.inf
            if t == 0 and length > 1:  # training lines are never empty
                logp[:, EOS] = -math.inf
            if t == length - 1:  # the last position can only end the line
                tok = torch.full_like(tok, EOS)
            elif method == "sample":
                tok = torch.multinomial(F.softmax(logp / max(temperature, 1e-6), -1), 1)[:, 0]
            else:
                tok = logp.argmax(-1)
            out[:, t] = torch.where(done, PAD, tok)
            done |= tok == EOS
            if done.all():
                break
        return out

    def _beam(self, z, width: int, length: int) -> torch.Tensor:
        b, dev = z.shape[0], z.device
        zw = z.repeat_interleave(width, 0)                                  # (B*W, latent)
        state = self.initial_state(zw)
        scores = torch.full((b, width), -math.inf, device=dev)
        scores[:, 0] = 0.0                                                  # one live beam at the start
        seqs = torch.zeros(b, width, length, dtype=torch.long, device=dev)
        done = torch.zeros(b, width, dtype=torch.bool, device=dev)
        lengths = torch.zeros(b, width, device=dev)
        tok = torch.full((b * width,), BOS, dtype=torch.long, device=dev)
        v = self.vocab
        for t in range(length):
            logp, state = self._step(zw, self._next_input(tok) if t else tok, state)
            logp[:, PAD] = logp[:, BOS] = -math.inf
            if t == 0 and length > 1:
                logp[:, EOS] = -math.inf
            if t == length - 1:
                logp[:, :EOS] = -math.inf
                logp[:, EOS + 1:] = -math.inf
            logp = logp.view(b, width, v)
            # a finished line only extends with padding, at no cost
            fin = torch.full_like(logp, -math.inf)
            fin[..., PAD] = 0.0
            logp = torch.where(done.unsqueeze(-1), fin, logp)
            cand = (scores.unsqueeze(-1) + logp).view(b, width * v)
            scores, flat = cand.topk(width, -1)
            src, tok2 = flat // v, flat % v                                 # (B, W)
            seqs = seqs.gather(1, src.unsqueeze(-1).expand(-1, -1, length)).clone()
            seqs[:, :, t] = tok2
            was_done = done.gather(1, src)
            lengths = lengths.gather(1, src) + (~was_done).float()
            done = was_done | (tok2 == EOS)
            base = (torch.arange(b, device=dev) * width).unsqueeze(1)
            state = self._reorder(state, (base + src).view(-1))
            tok = tok2.view(-1)
            if done.all():
                break
        penalty = ((5.0 + lengths) / 6.0) ** 0.6
        best = (scores / penalty).argmax(-1)
        return seqs[torch.arange(b, device=dev), best]


class GreedyDecoder(nn.Module):
    """``RecurrentDecoder.generate(z, "greedy")`` as a module TorchScript compiles, loop included
    (for export): the same steps, masks and forced end, in code free of Python-only constructs.
    Made with :meth:`of`, which picks the variant for the decoder's cell; a test checks that both
    give generate's tokens."""

    def __init__(self, decoder: RecurrentDecoder):
        super().__init__()
        self.embed, self.init, self.rnn, self.out = decoder.embed, decoder.init, decoder.rnn, decoder.out
        self.length, self.inputless = decoder.length, decoder.inputless
        self.pad, self.bos, self.eos, self.unk = PAD, BOS, EOS, UNK   # attributes: TorchScript reads no globals

    @staticmethod
    def of(decoder: RecurrentDecoder) -> "GreedyDecoder":
        return (_GreedyLSTM if decoder.cell == "lstm" else _GreedyGRU)(decoder)

    def _start(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - per cell
        raise NotImplementedError

    def _advance(self, inp: torch.Tensor, h: torch.Tensor, c: torch.Tensor):  # pragma: no cover - per cell
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, length = z.shape[0], self.length
        out = torch.zeros(b, length, dtype=torch.long, device=z.device)
        tok = torch.full((b,), self.bos, dtype=torch.long, device=z.device)
        done = torch.zeros(b, dtype=torch.bool, device=z.device)
        h, c = self._start(z)
        for t in range(length):
            feed = tok
            if self.inputless and t > 0:
                feed = torch.full_like(tok, self.unk)
            e = torch.cat([self.embed(feed).unsqueeze(1), z.unsqueeze(1)], -1)
            y, h, c = self._advance(e, h, c)
            logp = torch.log_softmax(self.out(y[:, 0]).float(), -1)
            logp[:, self.pad] = -float("inf")
            logp[:, self.bos] = -float("inf")
            if t == 0 and length > 1:
                logp[:, self.eos] = -float("inf")
            if t == length - 1:
                tok = torch.full_like(tok, self.eos)
            else:
                tok = logp.argmax(-1)
            out[:, t] = torch.where(done, torch.zeros_like(tok), tok)
            done = done | (tok == self.eos)
            if bool(done.all()):
                break
        return out


class _GreedyGRU(GreedyDecoder):
    def _start(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.init(z)).unsqueeze(0)
        return h, h

    def _advance(self, inp: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        y, h = self.rnn(inp, h)
        return y, h, c


class _GreedyLSTM(GreedyDecoder):
    def _start(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = torch.tanh(self.init(z)).unsqueeze(0).chunk(2, -1)
        return h.contiguous(), c.contiguous()

    def _advance(self, inp: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        y, (h, c) = self.rnn(inp, (h, c))
        return y, h, c
