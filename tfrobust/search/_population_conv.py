"""Ways to compute a population convolution, and the rule that picks one per layer shape.

A population convolution applies member m's filter bank `kernel[m]` of shape
`(k, k, C, F)` to member m's input. Every implementation here takes inputs
`(batch, H, W, C)` (shared by all members: the first layer) or `(batch, H, W,
population, C)` (one slice per member) and a kernel `(population, k, k, C, F)`,
and returns `(batch, H, W, population, F)`; 'same' padding, stride 1. They
compute the same sums in different orders (equal to float32 rounding, see
tests/population_conv_test.py).

    concat_filters  shared input only: one ordinary convolution whose P x F
                    output channels are all members' filters side by side.
    patch_einsum    k x k patches gathered from shifted slices, contracted
                    with the kernels in one `einsum` batched over members.
    member_loop     P ordinary convolutions, one per member, stacked.
    grouped         one grouped convolution (the members' channels
                    concatenated, `feature_group_count = P`). Only under XLA:
                    TensorFlow's CPU Conv2D runs a grouped forward pass but its
                    filter-gradient kernel rejects groups ("filter_size does
                    not have enough elements"), and XLA's CPU backend expands
                    the groups into a dense convolution, P times the work.

Folding the population into the batch axis needs one kernel for all folded
examples, so it fits the weight-free layers (pooling) but not a convolution
with per-member filters; the shared first layer instead folds the population
into the output channels (`concat_filters`).
"""

from keras import ops

IMPLEMENTATIONS = ("concat_filters", "patch_einsum", "member_loop", "grouped")

# Chosen from timings on the shared, loaded 2-core CPU (XLA, as the population
# trainer compiles it; batch 64), where load drift is as large as the
# differences, so the rule rests on the whole-model runs:
# - the cnn's per-member 4x4x16 -> 32 layer, forward + backward: member_loop
#   78 ms vs patch_einsum 130 ms at P = 16 and 762 ms vs 569 ms at P = 64 (one
#   after the other); interleaved (`_conv_benchmark.time_conv_variants`,
#   medians of 5, revision 4fc4b90) 26.9 vs 32.6 ms at P = 16 and 196 vs
#   284 ms at P = 64. member_loop's XLA compile grows with P (124 s at 64).
# - whole cnn population (`search.throughput`, 100 steps): P = 16 5.0x ->
#   8.4x per-candidate training with member_loop (revision c7fa481); P = 64
#   patch_einsum 4.5x vs member_loop 2.2x (revision 4fc4b90).
# - the shared 8x8x1 -> 16 first layer, interleaved: concat_filters 5.2 ms,
#   patch_einsum 4.6 ms (equal within the noise; concat_filters is one op),
#   member_loop 14.9 ms, grouped 386 ms (XLA's CPU backend expands the groups).
# Per-member layers: (largest population, choice), in order.
FASTEST = {"shared": "concat_filters", "per_member": ((16, "member_loop"), (None, "patch_einsum"))}


def choose(shared_input, population_size):
    """The implementation `PopulationConv2D(implementation="auto")` uses for a layer."""
    if shared_input:
        return FASTEST["shared"]
    for largest, implementation in FASTEST["per_member"]:
        if largest is None or population_size <= largest:
            return implementation
    raise AssertionError("FASTEST['per_member'] must end with a (None, ...) entry.")


def check_implementation(implementation, shared_input):
    """Raises a ValueError naming the choices if `implementation` cannot run this layer."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"Unknown convolution implementation {implementation!r}; choose 'auto' or one of "
                         f"{list(IMPLEMENTATIONS)}.")
    if implementation == "concat_filters" and not shared_input:
        raise ValueError("implementation='concat_filters' needs an input shared by all members (the first layer "
                         "with weights); use 'auto', 'patch_einsum', 'member_loop' or 'grouped'.")


def population_conv(inputs, kernel, implementation):
    """Member m's 'same' convolution of its input with `kernel[m]`: `(batch, H, W, population, F)`."""
    return _FUNCTIONS[implementation](inputs, kernel)


def _concat_filters(inputs, kernel):
    population, k, _, _, filters = kernel.shape
    # (P, k, k, C, F) -> (k, k, C, P * F): one ordinary convolution.
    stacked = ops.reshape(ops.transpose(kernel, (1, 2, 3, 0, 4)), (k, k, -1, population * filters))
    outputs = ops.conv(inputs, stacked, padding="same")
    return ops.reshape(outputs, (-1,) + tuple(outputs.shape[1:3]) + (population, filters))


def _patch_einsum(inputs, kernel):
    population, k, _, channels, filters = kernel.shape
    shared = len(inputs.shape) == 4
    height, width = inputs.shape[1:3]
    # Patches from shifted slices of the zero-padded input. (TensorFlow's
    # extract_patches gradient mixes channels, so one member's NaN would
    # poison the others; slicing keeps the members' gradients apart.)
    before, after = (k - 1) // 2, k // 2
    padding = ((0, 0), (before, after), (before, after)) + ((0, 0),) * (len(inputs.shape) - 3)
    padded = ops.pad(inputs, padding)
    patches = ops.stack([padded[:, i : i + height, j : j + width] for i in range(k) for j in range(k)], axis=3)
    kernel = ops.reshape(kernel, (population, k * k, channels, filters))
    return ops.einsum("bhwkc,pkcf->bhwpf" if shared else "bhwkpc,pkcf->bhwpf", patches, kernel)


def _member_loop(inputs, kernel):
    # unstack, not one slice per member: the gradient of P slices is P padded
    # full-size tensors summed, the gradient of unstack one stack.
    kernels = ops.unstack(kernel, axis=0)
    member_inputs = [inputs] * len(kernels) if len(inputs.shape) == 4 else ops.unstack(inputs, axis=3)
    return ops.stack([ops.conv(x, w, padding="same") for x, w in zip(member_inputs, kernels)], axis=3)


def _grouped(inputs, kernel):
    population, k, _, channels, filters = kernel.shape
    height, width = inputs.shape[1:3]
    if len(inputs.shape) == 4:  # a shared input: every group reads the same channels
        inputs = ops.stack([inputs] * population, axis=3)
    merged = ops.reshape(inputs, (-1, height, width, population * channels))
    # (P, k, k, C, F) -> (k, k, C, P * F): group m's output channels are member m's filters.
    stacked = ops.reshape(ops.transpose(kernel, (1, 2, 3, 0, 4)), (k, k, channels, population * filters))
    outputs = ops.conv(merged, stacked, padding="same")  # groups = input channels / kernel input channels = P
    return ops.reshape(outputs, (-1, height, width, population, filters))


_FUNCTIONS = {
    "concat_filters": _concat_filters,
    "patch_einsum": _patch_einsum,
    "member_loop": _member_loop,
    "grouped": _grouped,
}
