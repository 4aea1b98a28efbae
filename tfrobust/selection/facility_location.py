"""Greedy facility location: the submodular coreset selection of CRAIG and AdaCore.

A coreset S of a set of per-example vectors v_1..v_n is good when every
example has a member of S close to it: Mirzasoleiman, Bilmes and Leskovec
(ICML 2020, CRAIG) bound the error of a weighted coreset's gradient by
sum_i min_{j in S} ||v_i - v_j|| and maximise the facility-location function

    F(S) = sum_i max_{j in S} (d_max - ||v_i - v_j||),     d_max = max_ij ||v_i - v_j||,

which is monotone submodular, so the greedy algorithm (add the element of
largest marginal gain, k times) is within 1 - 1/e of the best set of size k
(Nemhauser, Wolsey and Fisher, 1978). Each chosen element is weighted by the
size of its cluster, the examples closer to it than to any other chosen one.
"""

import heapq

import numpy as np

# Candidates whose gains the lazy greedy recomputes together.
_BLOCK = 16


def pairwise_distances(vectors):
    """Euclidean distances between the rows of `vectors`, an `(n, n)` float64 array."""
    vectors = np.asarray(vectors, np.float64)
    squared = np.sum(vectors * vectors, axis=1)
    gram = vectors @ vectors.T
    return np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * gram, 0.0))


def facility_location_value(similarity, selected):
    """F(S) = sum_i max_{j in S} similarity[i, j] (0 for an empty S)."""
    if len(selected) == 0:
        return 0.0
    return float(np.sum(np.max(similarity[:, list(selected)], axis=1)))


def greedy_facility_location(vectors, k):
    """The greedy facility-location coreset of size `k` of the rows of `vectors`.

    Memory and time are O(n^2) and O(k n^2) for n rows: run it per class (as
    CRAIG and AdaCore do) so that n is one class's examples.

    Args:
        vectors: `(n, d)` array, one vector per example.
        k: the coreset's size, 1 <= k <= n.

    Returns:
        `(selected, cluster_sizes)`: int64 positions of the chosen rows in the
        order greedy picked them (ties go to the lowest position), and for each
        the number of rows that are closest to it among the chosen (ties to the
        earlier pick; a chosen row counts for itself); the sizes sum to n.

    Raises:
        ValueError: `k` outside [1, n] or `vectors` not a 2-D array.
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"vectors must be a non-empty (n, d) array; got shape {vectors.shape}.")
    n = len(vectors)
    if not 1 <= k <= n:
        raise ValueError(f"A coreset of {k} out of {n} examples is impossible; k must be in [1, {n}].")
    distances = pairwise_distances(vectors)
    similarity = distances.max() - distances
    covered = np.zeros(n)  # max similarity to the chosen set so far (F of the empty set is 0)
    # Lazy greedy (Minoux, 1978) in blocks: submodularity means a gain never grows, so a gain computed
    # earlier bounds the gain now. The top `_BLOCK` bounds are recomputed at once; the best of them is
    # the greedy pick as soon as it beats every bound left in the heap (ties go to the lowest position,
    # as in plain greedy). Far fewer than the n^2 per step of plain greedy, in few numpy calls.
    heap = [(-gain, position) for position, gain in enumerate(similarity.sum(axis=0))]
    heapq.heapify(heap)
    selected = []
    while len(selected) < k:
        block = np.array([heapq.heappop(heap)[1] for _ in range(min(_BLOCK, len(heap)))])
        gains = np.maximum(similarity[:, block] - covered[:, None], 0.0).sum(axis=0)
        best = np.lexsort((block, -gains))[0]
        if not heap or (-gains[best], block[best]) < heap[0]:
            selected.append(int(block[best]))
            covered = np.maximum(covered, similarity[:, block[best]])
        else:
            best = None
        for index, (gain, position) in enumerate(zip(gains, block)):
            if index != best:
                heapq.heappush(heap, (-gain, int(position)))
    selected = np.asarray(selected, np.int64)
    nearest = np.argmin(distances[:, selected], axis=1)
    nearest[selected] = np.arange(k)  # a chosen row is its own centre, even beside an exact duplicate
    return selected, np.bincount(nearest, minlength=k).astype(np.int64)
