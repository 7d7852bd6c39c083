"""Fake (meta) implementations of the lightring:: ops for torch.compile.

On torch >= 2.4 the ops are opaque to the compiler: it sees only these shape
functions, which must allocate exactly as csrc/ops.cpp does (outputs in the
memory order of the matching input, fp32 [B, H, D, E] states, [0] for an output
that was not requested). On older torch nothing is registered and eager mode
works unchanged.
"""
import torch


def _empty_rows_like(like, dim):
    b, h, n = like.shape[0], like.shape[1], like.shape[2]
    if like.stride(1) < like.stride(2):
        return like.new_empty((b, n, h, dim)).transpose(1, 2)
    return like.new_empty((b, h, n, dim))


def _state(q, v, wanted):
    if not wanted:
        return q.new_empty((0,), dtype=torch.float32)
    return q.new_empty((q.shape[0], q.shape[1], q.shape[3], v.shape[3]), dtype=torch.float32)


def register_fakes():
    """Registers the fake implementations; returns False where torch is too old."""
    register = getattr(torch.library, "register_fake", None)
    if register is None:  # torch < 2.4
        return False

    @register("lightring::forward")
    def _forward(q, k, v, decay, scale, initial_state, output_final_state, block_size):
        return _empty_rows_like(v, v.shape[3]), _state(q, v, output_final_state)

    @register("lightring::backward")
    def _backward(q, k, v, d_o, decay, scale, initial_state, d_final_state,
                  output_d_initial_state, block_size):
        return (_empty_rows_like(q, q.shape[3]), _empty_rows_like(k, k.shape[3]),
                _empty_rows_like(v, v.shape[3]), _state(q, v, output_d_initial_state))

    @register("lightring::local_state")
    def _local_state(x, y, decay, scale, backward, block_size):
        return x.new_empty((x.shape[0], x.shape[1], x.shape[3], y.shape[3]), dtype=torch.float32)

    def _pieces(q, v, offsets):
        return q.new_empty((offsets.shape[0] - 1, q.shape[1], q.shape[3], v.shape[3]),
                           dtype=torch.float32)

    @register("lightring::forward_docs")
    def _forward_docs(q, k, v, decay, scale, offsets, continues, ends, initial_state,
                      doc_initial_states, output_doc_final_states, output_final_state,
                      block_size):
        finals = _pieces(q, v, offsets) if output_doc_final_states else \
            q.new_empty((0,), dtype=torch.float32)
        return (_empty_rows_like(v, v.shape[3]), finals, _state(q, v, output_final_state))

    @register("lightring::backward_docs")
    def _backward_docs(q, k, v, d_o, decay, scale, offsets, continues, ends, initial_state,
                       doc_initial_states, d_doc_final_states, d_final_state,
                       output_d_doc_initial_states, output_d_initial_state, block_size):
        d_init = _pieces(q, v, offsets) if output_d_doc_initial_states else \
            q.new_empty((0,), dtype=torch.float32)
        return (_empty_rows_like(q, q.shape[3]), _empty_rows_like(k, k.shape[3]),
                _empty_rows_like(v, v.shape[3]), d_init, _state(q, v, output_d_initial_state))

    return True
