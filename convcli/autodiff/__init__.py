"""Derivatives of conv1d: closed form (``closed``), banded storage (``banded``), autograd
(``autograd``), the ``jacobian`` command's core (``jacobian``), ``grad``, and the sizes checked
before any of it is allocated (``sizing``, which imports no torch)."""
