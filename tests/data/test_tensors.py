"""Data of the user's own: tensors, (x, c), Datasets, DataLoaders and iterators as data sources."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from straightflow.conditions import ClassLabels, TensorCondition
from straightflow.data.epochs import epoch_indices
from straightflow.data.tensors import StreamSource, TensorSource, as_data_source, condition_of


def _rows(n=40, d=3):
    return torch.arange(n * d, dtype=torch.float32).reshape(n, d)


def test_a_tensor_is_split_into_disjoint_training_and_heldout_rows():
    x = _rows()
    src = as_data_source(x)
    assert isinstance(src, TensorSource) and src.shape == (3,) and src.condition is None
    assert src.num_rows == 36 and src.heldout_rows.shape[0] == 4
    train = {tuple(r.tolist()) for r in src.train_rows}
    held = {tuple(r.tolist()) for r in src.heldout(4)}
    assert not train & held
    a, b = src.heldout_pair(2)
    assert not {tuple(r.tolist()) for r in a} & {tuple(r.tolist()) for r in b}


def test_integer_labels_become_classes_and_float_conditions_a_tensor_condition():
    x = _rows()
    labels = torch.arange(40) % 4
    src = as_data_source((x, labels))
    assert src.condition == ClassLabels(4) and src.num_classes == 4
    rows, c = src.rows(torch.tensor([0, 5]))
    assert torch.equal(c, labels[[0, 5]]) and torch.equal(rows, x[[0, 5]])
    images = torch.randn(40, 1, 4, 4)
    ctx = torch.randn(40, 2, 5)
    src = as_data_source((images, ctx))
    assert src.condition == TensorCondition((2, 5)) and src.num_classes == 0 and src.shape == (1, 4, 4)
    _, c = src.sample_labeled(7, torch.Generator().manual_seed(0))
    assert c.shape == (7, 2, 5)
    assert condition_of(src) == TensorCondition((2, 5))


def test_a_map_dataset_and_a_dataloader_over_it_give_the_same_rows_in_our_epoch_order():
    x, y = _rows(), torch.arange(40) % 2
    a = as_data_source(TensorDataset(x, y))
    b = as_data_source(DataLoader(TensorDataset(x, y), batch_size=7, shuffle=True))
    index = epoch_indices(3, 8, a.num_rows, seed=1)
    assert torch.equal(a.rows(index)[0], b.rows(index)[0]) and torch.equal(a.rows(index)[1], b.rows(index)[1])

    class Dicts(Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return {"x": torch.full((2,), float(i)), "cond": torch.tensor([i / 10])}

    src = as_data_source(Dicts())
    assert src.condition == TensorCondition((1,)) and src.shape == (2,)


def test_an_iterator_of_batches_streams_rows_and_keeps_its_first_batch_for_metrics():
    batches = [(torch.full((5, 2), float(k)), torch.full((5,), k % 3)) for k in range(6)]
    with pytest.raises(ValueError, match="pass num_classes="):
        as_data_source(batches)
    src = as_data_source(batches, num_classes=3)
    assert isinstance(src, StreamSource) and src.condition == ClassLabels(3)
    assert torch.equal(src.heldout(5), batches[0][0])
    x, c = src.sample_labeled(7)  # batch 1 and two rows of batch 2
    assert x[:, 0].tolist() == [1.0] * 5 + [2.0] * 2 and c.tolist() == [1] * 5 + [2] * 2
    for _ in range(5):  # a list is re-iterable: the stream starts over at its end
        src.sample(7)

    class Endless(IterableDataset):
        def __iter__(self):
            while True:
                yield torch.randn(3)

    src = as_data_source(DataLoader(Endless(), batch_size=4))
    assert src.sample(10).shape == (10, 3)


def test_a_one_shot_iterator_that_runs_out_is_a_one_line_error():
    src = as_data_source(iter([torch.zeros(4, 2), torch.zeros(4, 2)]))
    src.sample(4)
    with pytest.raises(ValueError, match="ran out"):
        src.sample(4)


def test_bad_data_are_one_line_errors():
    with pytest.raises(ValueError, match="at least 2 to hold one out"):
        as_data_source(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="NaN or infinite"):
        as_data_source(torch.tensor([[0.0], [float("nan")], [1.0]]))
    with pytest.raises(ValueError, match="conditions have 3 rows but the data 4"):
        as_data_source((torch.zeros(4, 2), torch.zeros(3)))
    with pytest.raises(ValueError, match="cannot use int as data"):
        as_data_source(3)
    with pytest.raises(ValueError, match=r"class labels must lie in 0\.\.1"):
        TensorSource(torch.zeros(4, 2), torch.tensor([0, 1, 2, 1]), num_classes=2)
