"""Gradient of cross-entropy and of squared error after a sigmoid, for the target 1.

Drawn when the documentation is built (matplotlib's plot directive), for
``docs/math/squared-error.md``.
"""

import matplotlib.pyplot as plt
import numpy as np

import fastxent

z = np.linspace(-8.0, 8.0, 401)
y = np.ones_like(z)
sigma = 1.0 / (1.0 + np.exp(-z))

# Cross-entropy: dL/dz = sigma(z) - y ("sum": the gradient of each element's own loss).
_, ce_grad = fastxent.binary_cross_entropy_with_grad(z, y, reduction="sum")
# Squared error 0.5 * (sigma(z) - y)**2: dL/dz = (sigma(z) - y) * sigma'(z).
mse_grad = (sigma - y) * sigma * (1.0 - sigma)

fig, ax = plt.subplots()
ax.plot(z, np.abs(ce_grad), label=r"cross-entropy: $|\sigma(z) - y|$")
ax.plot(z, np.abs(mse_grad), label=r"squared error: $|\sigma(z) - y|\,\sigma'(z)$")
ax.axvspan(-8.0, 0.0, color="0.93")
ax.text(-7.6, 0.45, "wrong: $\\sigma(z) < 1/2$")
ax.text(2.8, 0.45, "right: $\\sigma(z) > 1/2$")
ax.set_xlim(-8.0, 8.0)
ax.set_ylim(0.0, 1.05)
ax.set_xlabel("logit $z$ (target $y = 1$)")
ax.set_ylabel(r"gradient size $|\partial L / \partial z|$")
ax.legend(loc="upper right")
fig.tight_layout()
