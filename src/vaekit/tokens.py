"""The reserved token ids shared by the text kind of data and the recurrent networks."""

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
