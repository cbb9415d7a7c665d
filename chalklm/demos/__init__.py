"""The article's first two programs, run on the glass box with every number printed.

- `leaf_flower`: a simple neural network that reads a colour and a volume and says leaf or
  flower; then the same network shape, fed other data, answers another question.
- `chars`: the first language model: predict the next character from the previous few,
  then generate text one character at a time, each output fed back as input.

The synthetic tasks live in `tasks`, the shared printing helpers in `show`, and the
defaults the command line shows in `defaults`. The models are in chalklm/scratch/models.py.
"""
