"""A 2-layer Mamba-2 model learns to copy a token sequence after a delimiter."""

import torch
import torch.nn.functional as F
from torch import nn

from deeprl.worldmodels import Mamba2Model

VOCAB, COPY_LENGTH, BATCH = 8, 6, 32


def _batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs: tokens, a delimiter, then blanks; targets: the tokens, at the blanks."""
    tokens = torch.randint(0, VOCAB, (BATCH, COPY_LENGTH), generator=generator)
    inputs = torch.cat([tokens, torch.full((BATCH, 1), VOCAB),
                        torch.full((BATCH, COPY_LENGTH), VOCAB + 1)], dim=1)
    return inputs, tokens


def test_mamba2_learns_to_copy():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # predictable on shared cores
    try:
        torch.manual_seed(0)
        embed = nn.Embedding(VOCAB + 2, 64)
        model = Mamba2Model(d_model=64, n_layers=2, d_state=16, headdim=16, chunk_size=16,
                            backend="torch")
        head = nn.Linear(64, VOCAB)

        def loss_of(inputs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
            y, _ = model(embed(inputs))
            logits = head(y[:, COPY_LENGTH + 1:])
            return F.cross_entropy(logits.reshape(-1, VOCAB), tokens.reshape(-1))

        params = [*embed.parameters(), *model.parameters(), *head.parameters()]
        optimizer = torch.optim.Adam(params, lr=5e-3)
        generator = torch.Generator().manual_seed(1)
        for _ in range(250):
            loss = loss_of(*_batch(generator))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            eval_loss = loss_of(*_batch(torch.Generator().manual_seed(123))).item()
    finally:
        torch.set_num_threads(threads)
    # Chance level is ln(8) = 2.08; copying needs memory beyond the width-4 convolution.
    assert eval_loss < 0.2, eval_loss
