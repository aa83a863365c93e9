"""Builds the notebooks from the cell sources below, executes them and stores their outputs.

Usage (from the repository root)::

    python notebooks/_build.py              # every notebook defined here
    python notebooks/_build.py 01 02        # only those whose name starts with 01 or 02

Each notebook is a list of cells written with :func:`md` and :func:`code`. The
notebook is executed top to bottom with nbclient in a kernel running this very
interpreter (``sys.executable``), under the strict dtype and rank promotion the
test suite uses, and written with its outputs so that it reads on GitHub.
Cell ids are numbered, not random, so rebuilding an unchanged notebook changes
nothing but the outputs that really changed.
"""

# ruff: noqa: E501  (cell sources keep the notebooks' own 120-column lines, indented by 8 here)

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import textwrap
import time

import nbformat
from nbclient import NotebookClient

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CELL_TIMEOUT_S = 300


def md(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(textwrap.dedent(source).strip())


def code(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(textwrap.dedent(source).strip())


# ---------------------------------------------------------------------------------------------
# 01: the derivation
# ---------------------------------------------------------------------------------------------

DERIVATION = [
    md(
        r"""
        # 01 · The derivation, checked number by number

        This notebook walks through Jiashu Xu's note *BP for convolutional layer*
        (`bp-for-conv-layer.md`, linked from the README) on shapes small enough to print, and checks every
        step against JAX's own differentiation of `jax.lax.conv_general_dilated`:

        1. build $\phi(I)$ (im2col) and $F_f$ (the flattened filters), and the forward pass $O_f = \phi(I)\,F_f$;
        2. build the Kronecker matrices $I_{FN} \otimes \phi(I)$ and $F_f^T \otimes I_{OH\cdot OW}$ and check
           the note's Eq. (1) and Eq. (2);
        3. show that they *are* the Jacobians of the convolution, as `jax.jacrev` computes them;
        4. derive $\partial L/\partial F_f$ and $\partial L/\partial \phi(I)$ line by line as the note does,
           checking each line against `jax.grad`;
        5. the two misprints of the note: `F.reshape(-1, FN)` and "$(I \otimes B)^T = A^T \otimes B^T$";
        6. batching.

        The explicit matrices (Kronecker products, vec, the steps of the derivation) are plain NumPy; JAX
        appears as the library under test (`jaxconv`) and as the independent reference (`lax`, `jax.jacrev`,
        `jax.grad`). Everything runs in float64 so that the equalities hold to ~1e-15; each check prints the
        largest absolute difference and `assert`s it is tiny, so the notebook fails loudly if anything disagrees.
        """
    ),
    code(
        """
        import jax
        import jax.numpy as jnp
        import matplotlib.pyplot as plt
        import numpy as np
        from jax import lax

        import jaxconv

        jax.config.update("jax_enable_x64", True)  # float64, before any array exists: identities hold to rounding
        %matplotlib inline
        plt.rcParams.update({"figure.dpi": 90, "figure.facecolor": "white"})
        np.set_printoptions(precision=3, suppress=True, linewidth=130)
        rng = np.random.default_rng(0)


        def vec(a):
            \"\"\"Column-major vec of a matrix, its columns stacked: ``a.reshape(-1, order="F")``, for NumPy and JAX.\"\"\"
            return a.T.reshape(-1)


        def unvec(v, shape):
            \"\"\"The inverse of vec: a vector back to a (rows, cols) matrix.\"\"\"
            rows, cols = shape
            return v.reshape(cols, rows).T


        def check(name, got, want, tol=1e-12):
            \"\"\"Prints max |got - want| and asserts it is below ``tol`` (shapes must match exactly).\"\"\"
            got, want = np.asarray(got), np.asarray(want)
            assert got.shape == want.shape, (name, got.shape, want.shape)
            err = float(np.max(np.abs(got - want))) if got.size else 0.0
            print(f"{name:<62} max |diff| = {err:.1e}")
            assert err <= tol, (name, err)
        """
    ),
    md(
        r"""
        ## 1. The objects: $I$, $F$, $\phi(I)$, $F_f$, $O_f$

        One image $I$ of shape $(C, H, W)$ and $FN$ filters $F$ of shape $(FN, C, FH, FW)$; stride 1, no
        padding, so $OH = H - FH + 1$ and $OW = W - FW + 1$. The note's matrices are

        | symbol | shape | what it is |
        |---|---|---|
        | $\phi(I)$ | $(OH\cdot OW,\ C\cdot FH\cdot FW)$ | im2col: one row per output position (window), one column per (channel, kernel row, kernel col) |
        | $F_f$ | $(C\cdot FH\cdot FW,\ FN)$ | the filters, one per column, flattened in the same $(C, FH, FW)$ order |
        | $O_f$ | $(OH\cdot OW,\ FN)$ | the output, one column per output channel |

        `jaxconv.im2col` works on a batch $(N, C, H, W)$ and returns $(N, OH\cdot OW, C\cdot FH\cdot FW)$;
        here $N = 1$. `jaxconv.flatten_filters(F, groups)` returns $F_f$ with a leading group axis.
        """
    ),
    code(
        """
        C, H, W = 2, 4, 4  # image
        FN, FH, FW = 3, 2, 2  # filters
        key_image, key_filters, key_target = jax.random.split(jax.random.key(0), 3)
        I = jax.random.normal(key_image, (C, H, W))  # noqa: E741 (the note's name)
        F = jax.random.normal(key_filters, (FN, C, FH, FW))

        geometry = jaxconv.conv_geometry((H, W), (FH, FW))
        OH, OW = geometry.out_spatial
        M = OH * OW  # rows of phi: one per window
        K = C * FH * FW  # columns of phi: one per (channel, kernel offset)

        phi = np.asarray(jaxconv.im2col(I[None], (FH, FW))[0])
        F_f = np.asarray(jaxconv.flatten_filters(F, 1)[0])

        print(f"OH, OW = {OH}, {OW}")
        print(f"phi(I): {phi.shape}   F_f: {F_f.shape}")
        check("F_f == F.reshape(FN, -1).T", F_f, F.reshape(FN, -1).T, tol=0)
        """
    ),
    md(
        r"""
        Row $m$ of $\phi(I)$ is the window under output position $m = (oh, ow)$ (row-major), flattened in
        $(C, FH, FW)$ order, so row 0 is `I[:, 0:FH, 0:FW]` flattened. As an independent im2col we use
        `jax.lax.conv_general_dilated_patches`, which returns the same patches as channels of an image.
        """
    ),
    code(
        """
        check("row 0 of phi == I[:, :FH, :FW].reshape(-1)", phi[0], I[:, :FH, :FW].reshape(-1), tol=0)
        check("row OW+1 of phi == I[:, 1:1+FH, 1:1+FW]", phi[OW + 1], I[:, 1 : 1 + FH, 1 : 1 + FW].reshape(-1), tol=0)
        patches = lax.conv_general_dilated_patches(I[None], (FH, FW), (1, 1), "VALID")[0]  # (K, OH, OW)
        check("phi == lax.conv_general_dilated_patches, as rows", phi, patches.reshape(K, M).T, tol=0)
        """
    ),
    md(
        r"""
        ## 2. The forward pass is one matrix product: $O_f = \phi(I)\,F_f$

        Column $f$ of $O_f$ is output channel $f$, row-major over $(OH, OW)$: $O_f$ is the $(FN, OH, OW)$
        output reshaped to $(FN, OH\cdot OW)$ and transposed. `jaxconv.forward_gemm` computes the same
        product in the transposed layout the library keeps internally ($O_f^T = F_f^T \phi^T$, with a group
        axis); `jaxconv.conv` is the whole layer.
        """
    ),
    code(
        """
        def lax_conv(image, filters):
            \"\"\"The reference: one (C, H, W) image through lax.conv_general_dilated -> (FN, OH, OW).\"\"\"
            return lax.conv_general_dilated(image[None], filters, (1, 1), "VALID")[0]


        O = np.asarray(lax_conv(I, F))  # noqa: E741 (the note's name)
        O_f = phi @ F_f

        check("phi(I) @ F_f == lax conv output as (OH*OW, FN)", O_f, O.reshape(FN, M).T)
        check("jaxconv.forward_gemm(phi^T, F_f)^T == phi @ F_f", jaxconv.forward_gemm(phi.T, F_f[None])[0].T, O_f)
        check("jaxconv.conv == lax conv", jaxconv.conv(I[None], F)[0], O)
        """
    ),
    md(
        r"""
        ## 3. vec and the Kronecker product

        $\mathrm{vec}(X)$ stacks the columns of $X$ (column-major). The one identity the note uses is

        $$\mathrm{vec}(AXB) = (B^T \otimes A)\,\mathrm{vec}(X).$$

        A pleasant consequence of column-major vec and of the shapes above: $\mathrm{vec}(O_f)$ is the
        $(FN, OH, OW)$ output flattened in its natural (row-major) order, and $\mathrm{vec}(F_f)$ is `F`
        flattened in its natural order. So Jacobians of the convolution with respect to the natural
        flattenings are exactly the Jacobians with respect to the note's vecs.
        """
    ),
    code(
        """
        A, X, B = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal((5, 2))
        check("vec(A X B) == (B^T kron A) vec(X)", vec(A @ X @ B), np.kron(B.T, A) @ vec(X))
        check("unvec(vec(X)) == X", unvec(vec(X), X.shape), X, tol=0)

        check("vec(O_f) == O.reshape(-1)", vec(O_f), O.reshape(-1))
        check("vec(F_f) == F.reshape(-1)", vec(F_f), F.reshape(-1), tol=0)
        """
    ),
    md(
        r"""
        ## 4. Eq. (1) and Eq. (2)

        Writing $O_f = \phi(I)\,F_f\,I_{FN}$ and $O_f = I_{OH\cdot OW}\,\phi(I)\,F_f$ and applying the vec
        identity gives the note's two linear forms of the same output:

        $$\mathrm{vec}(O_f) = (I_{FN} \otimes \phi(I))\,\mathrm{vec}(F_f) \qquad (1)$$

        $$\mathrm{vec}(O_f) = (F_f^T \otimes I_{OH\cdot OW})\,\mathrm{vec}(\phi(I)) \qquad (2)$$

        Eq. (1) is linear in the filters, Eq. (2) linear in the image's columns. We build both matrices
        explicitly.
        """
    ),
    code(
        """
        kron_1 = np.kron(np.eye(FN), phi)  # I_FN (x) phi(I): (FN*M, K*FN)
        kron_2 = np.kron(F_f.T, np.eye(M))  # F_f^T (x) I_{OH*OW}: (FN*M, M*K)
        print(f"I_FN kron phi(I):     {kron_1.shape}")
        print(f"F_f^T kron I_OH*OW:   {kron_2.shape}")

        check("Eq. (1): (I_FN kron phi) vec(F_f) == vec(O_f)", kron_1 @ vec(F_f), vec(O_f))
        check("Eq. (2): (F_f^T kron I) vec(phi) == vec(O_f)", kron_2 @ vec(phi), vec(O_f))
        """
    ),
    code(
        """
        fig, axes = plt.subplots(
            1, 2, figsize=(12, 5), layout="constrained", gridspec_kw={"width_ratios": [kron_1.shape[1], kron_2.shape[1]]}
        )
        titles = [
            r"Eq. (1): $I_{FN} \\otimes \\phi(I)$" + "\\n" + r"$FN$ copies of $\\phi(I)$ on the diagonal",
            r"Eq. (2): $F_f^T \\otimes I_{OH\\cdot OW}$" + "\\n" + r"block $(f, k)$ is $(F_f)_{kf}\\, I_{OH\\cdot OW}$",
        ]
        xlabels = [r"entry of vec($F_f$), filter by filter", r"entry of vec($\\phi(I)$), column by column of $\\phi$"]
        for ax, matrix, title, xlabel in zip(axes, [kron_1, kron_2], titles, xlabels):
            bound = np.abs(matrix).max()
            image = ax.imshow(matrix, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(r"entry of vec($O_f$)")
            fig.colorbar(image, ax=ax, shrink=0.8, label="matrix entry")
        plt.show()
        """
    ),
    md(
        r"""
        ## 5. These matrices are the Jacobians of the convolution

        Because $\mathrm{vec}(O_f)$ is linear in $\mathrm{vec}(F_f)$ with matrix $I_{FN}\otimes\phi(I)$,
        that matrix is the Jacobian $\partial\,\mathrm{vec}(O_f) / \partial\,\mathrm{vec}(F_f)^T$. We compute
        it with `jax.jacrev` of `lax.conv_general_dilated`, which knows nothing about im2col, and also of
        `jaxconv.conv`, whose reverse mode runs the note's hand-derived backward pass (a `custom_vjp`):
        `jacrev` builds the Jacobian from that backward pass, one vector-Jacobian product per row.
        """
    ),
    code(
        """
        jac_filters = jax.jacrev(lambda filters: lax_conv(I, filters).reshape(-1))(F)
        jac_filters = np.asarray(jac_filters).reshape(FN * M, F.size)
        check("jacrev(lax conv) wrt F == I_FN kron phi(I)  [Eq. (1)]", jac_filters, kron_1)

        jac_filters_ours = jax.jacrev(lambda filters: jaxconv.conv(I[None], filters).reshape(-1))(F)
        check("jacrev(jaxconv.conv) wrt F == I_FN kron phi(I)", np.reshape(jac_filters_ours, (FN * M, F.size)), kron_1)
        """
    ),
    md(
        r"""
        Eq. (2) is about $O_f$ as a function of $\phi$: $O_f = \phi\,F_f$ with $F_f$ fixed (the convolution
        itself is a function of $I$, not of $\phi$). `jacrev` of $\phi \mapsto \mathrm{vec}(\phi F_f)$ (the
        product computed by `jaxconv.forward_gemm`) has shape $(FN\cdot OH\cdot OW,\ OH\cdot OW,\ C\cdot FH\cdot FW)$:
        the derivative of each entry of $\mathrm{vec}(O_f)$ with respect to each $\phi[m, k]$. Putting the last
        two axes in column-major order, $(k, m)$, gives $\partial\,\mathrm{vec}(O_f) / \partial\,\mathrm{vec}(\phi)^T$.
        """
    ),
    code(
        """
        def gemm(cols):
            return jaxconv.forward_gemm(cols.T, F_f[None])[0].T  # phi @ F_f


        jac_cols = np.asarray(jax.jacrev(lambda cols: vec(gemm(cols)))(phi))  # (FN*M, M, K): d vec(O_f)[i] / d phi[m, k]
        jac_cols = jac_cols.transpose(0, 2, 1).reshape(FN * M, K * M)  # columns in vec(phi) order: k-major
        check("jacrev(phi -> phi F_f) wrt vec(phi) == F_f^T kron I  [Eq. (2)]", jac_cols, kron_2)
        """
    ),
    md(
        r"""
        To reach the image, note that im2col only copies pixels: $\mathrm{vec}(\phi(I)) = S\,\mathrm{vec}(I)$
        for a 0/1 *selection matrix* $S$ of shape $(M\cdot K,\ C\cdot H\cdot W)$ with one 1 per row (here
        $\mathrm{vec}(I)$ is `I.reshape(-1)`). We build $S$ from `jaxconv.window_indices` (which padded pixel
        each window offset reads), check it is `jacrev` of `jaxconv.im2col`, and then check the chain rule
        $\partial\,\mathrm{vec}(O_f)/\partial\,\mathrm{vec}(I)^T = (F_f^T \otimes I_{OH\cdot OW})\,S$ against
        `jacrev` of the lax convolution with respect to the image.
        """
    ),
    code(
        """
        pixel = np.asarray(jaxconv.window_indices(geometry))  # (M, FH*FW): flat (h, w) read by window m, offset
        S = np.zeros((M * K, C * H * W))
        for c in range(C):
            for offset in range(FH * FW):
                k = c * FH * FW + offset  # column of phi: (c, kh, kw) channel-major
                for m in range(M):
                    S[k * M + m, c * H * W + pixel[m, offset]] = 1.0  # entry (m, k) of phi is entry k*M+m of vec(phi)

        check("vec(phi) == S vec(I)", S @ np.asarray(I).reshape(-1), vec(phi), tol=0)
        jac_im2col = jax.jacrev(lambda image: vec(jaxconv.im2col(image[None], (FH, FW))[0]))(I)
        check("jacrev(jaxconv.im2col) == S", np.reshape(jac_im2col, (M * K, -1)), S, tol=0)

        jac_image = jax.jacrev(lambda image: lax_conv(image, F).reshape(-1))(I)
        check("jacrev(lax conv) wrt I == (F_f^T kron I) S", np.reshape(jac_image, (FN * M, -1)), kron_2 @ S)
        jac_image_ours = jax.jacrev(lambda image: jaxconv.conv(image[None], F).reshape(-1))(I)
        check("jacrev(jaxconv.conv) wrt I == (F_f^T kron I) S", np.reshape(jac_image_ours, (FN * M, -1)), kron_2 @ S)

        fig, ax = plt.subplots(figsize=(5, 6))
        ax.imshow(S, cmap="Greys", interpolation="nearest", aspect="auto")
        ax.set_title(r"$S = \\partial\\,\\mathrm{vec}(\\phi(I)) / \\partial\\,\\mathrm{vec}(I)^T$: one 1 per row (black)")
        ax.set_xlabel(r"pixel of $I$  (c, h, w), row-major")
        ax.set_ylabel(r"entry of vec($\\phi(I)$)")
        plt.show()
        """
    ),
    md(
        r"""
        `S` has one 1 per row (each entry of $\phi$ copies one pixel) but several per column: a pixel is read by
        every window that covers it. $S^T$ is col2im, the subject of notebook 02.

        ## 6. $\partial L/\partial F_f$, step by step

        Take any scalar loss of the output; here $L = \tfrac12\lVert O - T\rVert^2$ for a fixed random
        target $T$. Backpropagation hands the layer $G = \partial L/\partial O_f$ (shape $(OH\cdot OW, FN)$);
        we get it from `jax.grad` of the loss as a function of $O_f$. The reference answer is `jax.grad` of the
        loss through `lax.conv_general_dilated` with respect to $F$, put in $F_f$'s layout.

        The note's lines, each checked:

        $$\frac{\partial L}{\partial \mathrm{vec}(F_f)}
        \overset{(a)}{=} \Big(\frac{\partial L}{\partial \mathrm{vec}(O_f)^T}\,
            \frac{\partial \mathrm{vec}(O_f)}{\partial \mathrm{vec}(F_f)^T}\Big)^T
        \overset{(b)}{=} (I_{FN} \otimes \phi(I))^T\, \mathrm{vec}(G)
        \overset{(c)}{=} (I_{FN} \otimes \phi(I)^T)\, \mathrm{vec}(G)
        \overset{(d)}{=} \mathrm{vec}(\phi(I)^T\, G\, I_{FN})$$

        (a) chain rule; (b) the Jacobian is Eq. (1)'s matrix; (c) transposing a Kronecker product,
        $(A \otimes B)^T = A^T \otimes B^T$; (d) the vec identity with $A = \phi(I)^T$, $X = G$,
        $B = I_{FN}$. Un-vec-ing: $\partial L/\partial F_f = \phi(I)^T G$.
        """
    ),
    code(
        """
        T = jax.random.normal(key_target, O.shape)


        def loss_of_output(out):
            return 0.5 * jnp.sum((out - T) ** 2)


        G = np.asarray(jax.grad(lambda out_f: loss_of_output(out_f.T.reshape(O.shape)))(O_f))  # dL/dO_f, (M, FN)
        dF_reference = np.asarray(jax.grad(lambda filters: loss_of_output(lax_conv(I, filters)))(F))  # like F
        dF_f_reference = dF_reference.reshape(FN, -1).T  # in F_f's layout

        step_a = (vec(G)[None, :] @ jac_filters).T[:, 0]  # (dL/dvec(O_f)^T  dvec(O_f)/dvec(F_f)^T)^T, jacrev's matrix
        step_b = kron_1.T @ vec(G)  # (I_FN kron phi)^T vec(G)
        step_c = np.kron(np.eye(FN), phi.T) @ vec(G)  # (I_FN kron phi^T) vec(G)
        step_d = vec(phi.T @ G @ np.eye(FN))  # vec(phi^T G I_FN)
        for name, step in [
            ("(a) chain rule with jacrev's Jacobian", step_a),
            ("(b) (I_FN kron phi)^T vec(G)", step_b),
            ("(c) (I_FN kron phi^T) vec(G)", step_c),
            ("(d) vec(phi^T G I_FN)", step_d),
        ]:
            check(f"{name} == vec(jax.grad wrt F_f)", step, vec(dF_f_reference))

        dF_f = phi.T @ G
        check("dL/dF_f = phi^T G", dF_f, dF_f_reference)
        check("jaxconv.filter_grad(phi^T, G^T) == phi^T G", jaxconv.filter_grad(phi.T, G.T[None])[0], dF_f)
        check("back to the filters' shape: (phi^T G)^T.reshape(F.shape)", dF_f.T.reshape(F.shape), dF_reference)
        """
    ),
    md(
        r"""
        **Misprint in the note, step (c).** The note justifies this step with "$(I \otimes B)^T = A^T \otimes
        B^T$", which mixes two letters; the identity is

        $$(A \otimes B)^T = A^T \otimes B^T,$$

        here with $A = I_{FN}$ (so $A^T = I_{FN}$) and $B = \phi(I)$. Checked below on rectangular matrices,
        where a wrong order of the factors would not even have the right shape. As the note says, the result
        $\partial L/\partial F_f = \phi(I)^T G$ is the backward pass of a linear layer $y = xW$,
        $\partial L/\partial W = x^T\,\partial L/\partial y$, with $\phi(I)$ as the input.
        """
    ),
    code(
        """
        A, B = rng.standard_normal((2, 3)), rng.standard_normal((4, 5))
        check("(A kron B)^T == A^T kron B^T", np.kron(A, B).T, np.kron(A.T, B.T))
        check("(I_FN kron phi)^T == I_FN kron phi^T", kron_1.T, np.kron(np.eye(FN), phi.T))
        """
    ),
    md(
        r"""
        ## 7. $\partial L/\partial \phi(I)$, step by step, and on to $\partial L/\partial I$

        The note's second derivation, row-vector form:

        $$\frac{\partial L}{\partial \mathrm{vec}(\phi)^T}
        \overset{(a)}{=} \frac{\partial L}{\partial \mathrm{vec}(O_f)^T}\,(F_f^T \otimes I_{OH\cdot OW})
        \overset{(b)}{=} \big[(F_f \otimes I_{OH\cdot OW})\,\mathrm{vec}(G)\big]^T
        \overset{(c)}{=} \mathrm{vec}(I_{OH\cdot OW}\, G\, F_f^T)^T$$

        (a) chain rule with Eq. (2)'s matrix; (b) transpose of a product, and
        $(F_f^T \otimes I)^T = F_f \otimes I$ by the same Kronecker identity; (c) the vec identity. So
        $\partial L/\partial\phi(I) = G\,F_f^T$. The reference is `jax.grad` of $\phi \mapsto L(\phi F_f)$.
        Then, since $\mathrm{vec}(\phi) = S\,\mathrm{vec}(I)$,
        $\partial L/\partial\,\mathrm{vec}(I) = S^T \mathrm{vec}(\partial L/\partial\phi)$, which is
        `jaxconv.col2im`; the reference is `jax.grad` through `lax.conv_general_dilated` with respect to $I$.
        """
    ),
    code(
        """
        dphi_reference = np.asarray(jax.grad(lambda cols: loss_of_output((cols @ F_f).T.reshape(O.shape)))(phi))

        step_a = vec(G) @ kron_2  # a row vector
        step_b = (np.kron(F_f, np.eye(M)) @ vec(G)).T
        step_c = vec(np.eye(M) @ G @ F_f.T)
        for name, step in [
            ("(a) vec(G)^T (F_f^T kron I)", step_a),
            ("(b) [(F_f kron I) vec(G)]^T", step_b),
            ("(c) vec(I G F_f^T)^T", step_c),
        ]:
            check(f"{name} == vec(jax.grad wrt phi)", step, vec(dphi_reference))

        dphi = G @ F_f.T
        check("dL/dphi = G F_f^T", dphi, dphi_reference)
        check("jaxconv.cols_grad(G^T, F_f)^T == G F_f^T", jaxconv.cols_grad(G.T[None], F_f[None]).T, dphi)

        dI_reference = jax.grad(lambda image: loss_of_output(lax_conv(image, F)))(I)
        dI = jaxconv.col2im(dphi[None], (1, C, H, W), (FH, FW))[0]
        check("dL/dI = col2im(dL/dphi) == jax.grad(lax conv) wrt I", dI, dI_reference)
        check("col2im(dL/dphi) == S^T vec(dL/dphi)", dI.reshape(-1), S.T @ vec(dphi))
        """
    ),
    md(
        r"""
        ## 8. Misprint in the note: `F.reshape(-1, FN)` scrambles the filters

        The note defines $F_f$ as `F.reshape(-1, FN)`. For filters stored $(FN, C, FH, FW)$ that is wrong: a
        row-major reshape to $(C\cdot FH\cdot FW, FN)$ deals the flat entries out row by row, so each column
        mixes pieces of different filters. The right matrix, whose column $f$ is filter $f$ flattened in
        $\phi$'s $(C, FH, FW)$ order, is `F.reshape(FN, -1).T` (Deep Learning from Scratch's `col_W`,
        `jaxconv.flatten_filters`). To see it, label each filter entry $F[f, c, i, j]$ with the digits
        $f\,c\,i\,j$ (filter numbered from 1): every column of the right matrix has a single leading digit.
        """
    ),
    code(
        """
        f, c, i, j = np.meshgrid(np.arange(FN), np.arange(C), np.arange(FH), np.arange(FW), indexing="ij")
        labels = 1000 * (f + 1) + 100 * c + 10 * i + j  # F[f, c, i, j] -> "f c i j"
        print("F.reshape(FN, -1).T  (right: column f is filter f)")
        print(labels.reshape(FN, -1).T)
        print()
        print("F.reshape(-1, FN)    (the note: columns mix filters)")
        print(labels.reshape(-1, FN))
        assert all(len(set(column // 1000)) == 1 for column in labels.reshape(FN, -1))
        assert any(len(set(column // 1000)) > 1 for column in labels.reshape(-1, FN).T)

        wrong = np.abs(phi @ np.asarray(F).reshape(-1, FN) - O_f).max()
        print(f"\\nmax |phi @ F.reshape(-1, FN) - O_f| = {wrong:.2f}   (not a rounding error)")
        assert wrong > 0.1
        """
    ),
    md(
        r"""
        `F.reshape(-1, FN)` *is* right for another layout: filters stored $(FH, FW, C, FN)$ (TensorFlow's
        HWIO), with $\phi$'s columns ordered $(FH, FW, C)$ to match. That may be where the note's expression
        comes from. The order of $\phi$'s columns and of $F_f$'s rows must agree; which order is a convention.
        """
    ),
    code(
        """
        F_hwio = np.asarray(F).transpose(2, 3, 1, 0)  # (FH, FW, C, FN)
        phi_hwc = phi.reshape(M, C, FH, FW).transpose(0, 2, 3, 1).reshape(M, K)  # columns ordered (FH, FW, C)
        check("HWIO filters: phi_(FH,FW,C) @ F_hwio.reshape(-1, FN) == O_f", phi_hwc @ F_hwio.reshape(-1, FN), O_f)
        """
    ),
    md(
        r"""
        ## 9. Batches

        For $N$ images, stack their $\phi(I_n)$ on top of each other: $\phi$ has $N\cdot OH\cdot OW$ rows and
        $O_f = \phi F_f$ is still one matrix product. Then $\partial L/\partial F_f = \phi^T G =
        \sum_n \phi(I_n)^T G_n$ sums the images' contributions inside one GEMM, $\partial L/\partial\phi = G F_f^T$
        splits back into per-image blocks for col2im, and a bias $b$ added to every row of $O_f$ gets
        $\partial L/\partial b = \sum_\text{rows} G$ (`jaxconv.bias_grad`). This is what `jaxconv.conv`'s
        custom VJP does (holding the matrices transposed, and in chunks of images when $\phi$ would be large);
        we check its gradients against `jax.grad` of the lax convolution.
        """
    ),
    code(
        """
        N = 3
        x = jax.random.normal(jax.random.key(6), (N, C, H, W))
        b = jax.random.normal(jax.random.key(7), (FN,))
        target = np.asarray(jax.random.normal(jax.random.key(8), (N, FN, OH, OW)))

        phi_per_image = np.asarray(jaxconv.im2col(x, (FH, FW)))  # (N, M, K)
        phi_batch = phi_per_image.reshape(N * M, K)  # images stacked as rows
        out_batch = np.asarray(lax.conv_general_dilated(x, F, (1, 1), "VALID")) + np.asarray(b)[None, :, None, None]
        G_batch = (out_batch - target).transpose(0, 2, 3, 1).reshape(N * M, FN)  # dL/dO_f, images stacked
        per_image = sum(phi_per_image[n].T @ G_batch[n * M : (n + 1) * M] for n in range(N))
        check("phi^T G == sum_n phi(I_n)^T G_n", phi_batch.T @ G_batch, per_image)


        def batch_loss(conv, x, filters, bias):
            return 0.5 * jnp.sum((conv(x, filters) + bias[None, :, None, None] - target) ** 2)


        lax_batch = lambda x, filters: lax.conv_general_dilated(x, filters, (1, 1), "VALID")
        dx_ref, dF_ref, db_ref = jax.grad(batch_loss, argnums=(1, 2, 3))(lax_batch, x, F, b)
        dx, dF, db = jax.grad(batch_loss, argnums=(1, 2, 3))(jaxconv.conv, x, F, b)

        check("phi^T G (batch) == jax.grad(lax) wrt F", (phi_batch.T @ G_batch).T.reshape(F.shape), dF_ref)
        check("sum over rows of G == jax.grad(lax) wrt b", G_batch.sum(axis=0), db_ref)
        dx_from_note = jaxconv.col2im((G_batch @ F_f.T).reshape(N, M, K), x.shape, (FH, FW))
        check("col2im(G F_f^T) == jax.grad(lax) wrt x", dx_from_note, dx_ref)
        check("jaxconv.conv's custom VJP: dL/dx", dx, dx_ref)
        check("jaxconv.conv's custom VJP: dL/dF", dF, dF_ref)
        check("jaxconv.conv's custom VJP: dL/db", db, db_ref)
        """
    ),
    md(
        r"""
        ## Summary

        | note | checked here against | jaxconv |
        |---|---|---|
        | $\phi(I)$ | `lax.conv_general_dilated_patches`; `jacrev(im2col)` $= S$ | `im2col` |
        | $F_f$ = `F.reshape(FN, -1).T` (not `F.reshape(-1, FN)`) | labelled filters | `flatten_filters` |
        | $O_f = \phi(I) F_f$ | `lax.conv_general_dilated` | `forward_gemm`, `conv` |
        | Eq. (1): $\mathrm{vec}(O_f) = (I_{FN}\otimes\phi(I))\,\mathrm{vec}(F_f)$ | `jacrev` wrt $F$ | |
        | Eq. (2): $\mathrm{vec}(O_f) = (F_f^T\otimes I_{OH\cdot OW})\,\mathrm{vec}(\phi(I))$ | `jacrev` wrt $\phi$ and, through $S$, wrt $I$ | |
        | $\partial L/\partial F_f = \phi(I)^T\,\partial L/\partial O_f$ | `jax.grad` wrt $F$ | `filter_grad` |
        | $\partial L/\partial \phi(I) = \partial L/\partial O_f\, F_f^T$ | `jax.grad` wrt $\phi$ | `cols_grad` |
        | $\partial L/\partial I = $ col2im$(\partial L/\partial\phi)$ $= S^T \ldots$ | `jax.grad` wrt $I$ | `col2im` |
        | $(A\otimes B)^T = A^T \otimes B^T$ (the note prints "$(I \otimes B)^T$") | random rectangular $A$, $B$ | |

        Notebook 02 looks at $\phi$ and col2im for strides, padding and dilation.
        """
    ),
]


# ---------------------------------------------------------------------------------------------
# 02: the im2col explorer
# ---------------------------------------------------------------------------------------------

IM2COL_EXPLORER = [
    md(
        r"""
        # 02 · im2col explorer

        $\phi(I) = $ `jaxconv.im2col(I)` has one row per output position (a window of the input) and one
        column per (channel, kernel offset). This notebook draws which input pixel each entry of $\phi$
        reads as stride, padding and dilation change; shows that `jaxconv.col2im` is the adjoint of im2col
        (it *adds* each entry back onto the pixel it came from, so a pixel read by several windows gets their
        sum: the overlap-count image); and measures how much bigger $\phi$ is than the input.
        """
    ),
    code(
        """
        import jax
        import jax.numpy as jnp
        import matplotlib.pyplot as plt
        import numpy as np
        from jax import lax

        import jaxconv

        jax.config.update("jax_enable_x64", True)  # float64, before any array exists
        %matplotlib inline
        plt.rcParams.update({"figure.dpi": 90, "figure.facecolor": "white"})

        # jaxconv.im2col and col2im run op by op; jitted, each configuration compiles once, several times faster.
        im2col = jax.jit(jaxconv.im2col, static_argnames=("kernel_size", "stride", "padding", "dilation"))
        col2im = jax.jit(
            jaxconv.col2im, static_argnames=("input_shape", "kernel_size", "stride", "padding", "dilation", "method")
        )


        def check(name, got, want, tol=1e-12):
            \"\"\"Prints max |got - want| and asserts it is below ``tol`` (shapes must match exactly).\"\"\"
            got, want = np.asarray(got), np.asarray(want)
            assert got.shape == want.shape, (name, got.shape, want.shape)
            err = float(np.max(np.abs(got - want))) if got.size else 0.0
            print(f"{name:<62} max |diff| = {err:.1e}")
            assert err <= tol, (name, err)
        """
    ),
    md(
        r"""
        ## 1. Which pixel does each entry of $\phi$ read?

        Give a $7\times 7$ single-channel image the pixel *ids* $1, \dots, 49$ (row-major) as values; then
        every entry of $\phi(\text{ids})$ is the id of the pixel it read, and 0 where a window reads padding.
        Four $3\times 3$ configurations: stride 1; stride 2; padding 1; dilation 2. Each is checked against
        `lax.conv_general_dilated_patches` (an independent im2col) and against `jaxconv.window_indices`, the
        NumPy index table behind the gather.
        """
    ),
    code(
        """
        H = W = 7
        KERNEL = (3, 3)
        ids = jnp.arange(1.0, H * W + 1).reshape(1, 1, H, W)  # pixel id, 1-based; 0 will mean padding

        CONFIGS = {
            "stride 1": dict(stride=1, padding=0, dilation=1),
            "stride 2": dict(stride=2, padding=0, dilation=1),
            "padding 1": dict(stride=1, padding=1, dilation=1),
            "dilation 2": dict(stride=1, padding=0, dilation=2),
        }

        reads = {}  # config -> phi(ids), (OH*OW, FH*FW)
        for name, config in CONFIGS.items():
            geometry = jaxconv.conv_geometry((H, W), KERNEL, **config)
            cols = im2col(ids, KERNEL, **config)[0]
            stride, pad, dilation = config["stride"], config["padding"], config["dilation"]
            strides, pads, dilations = (stride, stride), [(pad, pad)] * 2, (dilation, dilation)
            patches = lax.conv_general_dilated_patches(ids, KERNEL, strides, pads, rhs_dilation=dilations)
            check(f"{name}: im2col == lax.conv_general_dilated_patches", cols, patches[0].reshape(cols.shape[1], -1).T, tol=0)
            # window_indices index the padded image; map them back to ids (0 on the padding).
            padded_ids = np.pad(np.asarray(ids[0, 0]), pad)
            from_table = padded_ids.reshape(-1)[jaxconv.window_indices(geometry)]
            check(f"{name}: im2col == padded ids at window_indices", cols, from_table, tol=0)
            reads[name] = (geometry, np.asarray(cols))
            print(f"{'':<10}OH, OW = {geometry.out_spatial}; phi is {cols.shape}")
        """
    ),
    code(
        """
        fig, axes = plt.subplots(1, 4, figsize=(15, 6.5), layout="constrained")
        offsets = [f"({i},{j})" for i in range(KERNEL[0]) for j in range(KERNEL[1])]
        id_colors = plt.get_cmap("viridis").with_extremes(under="white")  # ids below 1, i.e. padding, in white
        for ax, (name, (_, cols)) in zip(axes, reads.items()):
            image = ax.imshow(cols, cmap=id_colors, vmin=1, vmax=H * W, aspect="auto", interpolation="nearest")
            if cols.shape[0] <= 25:  # small enough to print the ids
                for (m, k), value in np.ndenumerate(cols):
                    color = "white" if 0 < value < 0.6 * H * W else "black"
                    ax.text(k, m, f"{int(value)}", ha="center", va="center", fontsize=7, color=color)
            ax.set_title(f"{name}: phi is {cols.shape[0]} x {cols.shape[1]}")
            ax.set_xticks(range(len(offsets)), offsets, rotation=90)
            ax.set_xlabel("column of phi: kernel offset (kh, kw)")
            ax.set_ylabel("row of phi: window, row-major")
        fig.colorbar(image, ax=axes, shrink=0.8, extend="min", label="id of the input pixel read (white, 0 = padding)")
        fig.suptitle("phi(ids): the input pixel each entry of phi reads (7x7 image, 3x3 kernel)")
        plt.show()
        """
    ),
    md(
        r"""
        The same reads on the image itself. Top: three *rows* of $\phi$ (three windows: the first, the
        second, the last); each window reads a $3\times3$ patch, spread out by dilation, shifted by the
        stride from one window to the next. Bottom: two *columns* of $\phi$ (kernel offsets); a column reads
        one pixel per window, so it is the image subsampled by the stride and shifted by the offset (times the
        dilation). Grey cells are padding.
        """
    ),
    code(
        """
        def draw_image_grid(ax, geometry):
            \"\"\"The padded image: input pixels white with their ids, padding grey; axes in input coordinates.\"\"\"
            (lo_h, hi_h), (lo_w, hi_w) = geometry.padding
            ph, pw = geometry.padded_spatial
            is_pad = np.ones((ph, pw))
            is_pad[lo_h : lo_h + H, lo_w : lo_w + W] = 0
            extent = (-lo_w - 0.5, W + hi_w - 0.5, H + hi_h - 0.5, -lo_h - 0.5)
            ax.imshow(is_pad, cmap="Greys", vmin=0, vmax=3, extent=extent, interpolation="nearest")
            for h in range(H):
                for w in range(W):
                    ax.text(w, h, f"{h * W + w + 1}", ha="center", va="center", fontsize=6, color="0.55")
            ax.set_xticks(range(-lo_w, W + hi_w))
            ax.set_yticks(range(-lo_h, H + hi_h))
            ax.set_xlabel("input column w")
            ax.set_ylabel("input row h")
            return lo_h, lo_w


        def pixels_read(geometry, flat_positions):
            \"\"\"Padded flat positions -> (h, w) in input coordinates.\"\"\"
            (lo_h, _), (lo_w, _) = geometry.padding
            rows, cols = np.divmod(np.asarray(flat_positions), geometry.padded_spatial[1])
            return rows - lo_h, cols - lo_w


        colors = ["tab:red", "tab:blue", "tab:orange"]
        fig, axes = plt.subplots(2, 4, figsize=(16, 9.5), layout="constrained")
        for column, (name, (geometry, _)) in enumerate(reads.items()):
            table = jaxconv.window_indices(geometry)  # (OH*OW, FH*FW) padded flat positions
            last = geometry.num_windows - 1
            ax = axes[0, column]
            draw_image_grid(ax, geometry)
            for color, (row, shift) in zip(colors, [(0, -0.18), (1, 0.0), (last, 0.18)]):
                h, w = pixels_read(geometry, table[row])
                oh, ow = divmod(row, geometry.out_spatial[1])
                label = f"row {row}: window ({oh},{ow})"
                ax.scatter(w + shift, h + shift, s=70, marker="s", color=color, alpha=0.85, label=label)
            ax.set_title(f"{name}: three rows of phi")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8)

            ax = axes[1, column]
            draw_image_grid(ax, geometry)
            for color, (offset, shift) in zip(colors[:2], [(0, -0.12), (KERNEL[0] * KERNEL[1] - 1, 0.12)]):
                h, w = pixels_read(geometry, table[:, offset])
                kh, kw = divmod(offset, KERNEL[1])
                label = f"column {offset}: kernel offset ({kh},{kw})"
                ax.scatter(w + shift, h + shift, s=60, marker="o", color=color, alpha=0.85, label=label)
            ax.set_title(f"{name}: two columns of phi")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8)
        fig.suptitle("The pixels read by rows (windows, top) and columns (kernel offsets, bottom) of phi; grey = padding")
        plt.show()
        """
    ),
    md(
        r"""
        ## 2. col2im is the adjoint of im2col

        im2col is linear and only copies: $\mathrm{vec}(\phi(I)) = S\,\mathrm{vec}(I)$ with a 0/1 matrix $S$
        (one 1 per entry of $\phi$ that reads a pixel, an all-zero row where it reads padding). Its adjoint
        $S^T$ is col2im: every entry of $\phi$ is *added* back onto the pixel it was read from. That is the
        step $\partial L/\partial I = \mathrm{col2im}(\partial L/\partial\phi)$ of the backward pass.
        Adjointness means

        $$\langle \mathrm{im2col}(x),\, c\rangle = \langle x,\, \mathrm{col2im}(c)\rangle \quad\text{for all } x, c.$$

        We check it with random $x$ and $c$ (two images, three channels) for each configuration, with both of
        `col2im`'s methods (`"pad_add"`: one strided pad per kernel offset, summed; `"scatter_add"`: one
        scatter-add with im2col's indices), and against `jax.linear_transpose` of `im2col`, which JAX derives
        by itself.
        """
    ),
    code(
        """
        rng = np.random.default_rng(0)
        x_shape = (2, 3, H, W)
        x = rng.standard_normal(x_shape)
        print(f"{'configuration':<12} {'<im2col(x), c>':>18} {'<x, col2im(c)>':>18} {'rel. diff':>10}")
        for name, config in CONFIGS.items():
            cols_x = im2col(x, KERNEL, **config)
            c = rng.standard_normal(cols_x.shape)
            back = {method: col2im(c, x_shape, KERNEL, **config, method=method) for method in ("pad_add", "scatter_add")}
            lhs = np.vdot(cols_x, c)
            rhs = np.vdot(x, back["pad_add"])
            rel = abs(lhs - rhs) / abs(lhs)
            print(f"{name:<12} {lhs:>18.12f} {rhs:>18.12f} {rel:>10.1e}")
            assert rel < 1e-12, (name, lhs, rhs)
            check(f"  {name}: col2im pad_add == scatter_add", back["pad_add"], back["scatter_add"])
            transpose = jax.jit(jax.linear_transpose(lambda v, config=config: jaxconv.im2col(v, KERNEL, **config), x))
            check(f"  {name}: col2im == jax.linear_transpose(im2col)", back["pad_add"], transpose(c)[0])
        """
    ),
    md(
        r"""
        ### The overlap-count image

        $\mathrm{col2im}(\mathbf{1}) = S^T\mathbf{1}$ counts, for each pixel, the entries of $\phi$ that read
        it: how many windows cover it. It is the picture of why $\partial L/\partial I$ is not a reshape of
        $\partial L/\partial\phi$: interior pixels collect the gradient of up to $FH\cdot FW$ windows, edge
        pixels fewer. With a stride equal to the kernel the windows tile the image (ones: col2im is a pure
        scatter; on a 7-pixel side the last row and column are left over, zeros); with a stride larger than the
        kernel some pixels are never read (zeros: they get no gradient). Since each entry of $\phi$ reads at most one pixel, $S^TS$ is diagonal with these counts on
        its diagonal, so $\mathrm{col2im}(\mathrm{im2col}(x)) = \text{count}\odot x$; checked below.
        """
    ),
    code(
        """
        OVERLAP_CONFIGS = {
            "3x3, stride 1": dict(kernel=(3, 3), stride=1, padding=0, dilation=1),
            "3x3, stride 1, padding 1": dict(kernel=(3, 3), stride=1, padding=1, dilation=1),
            "3x3, stride 2, padding 1": dict(kernel=(3, 3), stride=2, padding=1, dilation=1),
            "3x3, stride 1, dilation 2": dict(kernel=(3, 3), stride=1, padding=0, dilation=2),
            "2x2, stride 2: tiles, odd edge unread": dict(kernel=(2, 2), stride=2, padding=0, dilation=1),
            "2x2, stride 3: gaps": dict(kernel=(2, 2), stride=3, padding=0, dilation=1),
        }
        image_shape = (1, 1, H, W)
        fig, axes = plt.subplots(2, 3, figsize=(13, 8), layout="constrained")
        for ax, (name, config) in zip(axes.flat, OVERLAP_CONFIGS.items()):
            config = dict(config)
            kernel = config.pop("kernel")
            cols_ids = im2col(ids, kernel, **config)
            count = np.asarray(col2im(np.ones(cols_ids.shape), image_shape, kernel, **config))
            # Every entry of phi that reads a pixel adds 1 somewhere: the counts sum to the non-padding reads.
            non_padding_reads = int((np.asarray(cols_ids) > 0).sum())
            assert int(count.sum()) == non_padding_reads, (name, count.sum(), non_padding_reads)
            check(f"{name}: col2im(im2col(x)) == count * x", col2im(cols_ids, image_shape, kernel, **config), count * ids)

            count = count[0, 0]
            image = ax.imshow(count, cmap="magma", vmin=0, vmax=max(count.max(), 1), interpolation="nearest")
            for (h, w), value in np.ndenumerate(count):
                color = "white" if value < 0.6 * count.max() else "black"
                ax.text(w, h, f"{int(value)}", ha="center", va="center", fontsize=8, color=color)
            ax.set_title(name)
            ax.set_xlabel("input column w")
            ax.set_ylabel("input row h")
            fig.colorbar(image, ax=ax, shrink=0.85, ticks=range(int(count.max()) + 1), label="windows reading the pixel")
        fig.suptitle("Overlap counts col2im(ones): how many entries of phi read each pixel of a 7x7 image")
        plt.show()
        """
    ),
    md(
        r"""
        ## 3. The memory cost of $\phi$

        For one image $\phi$ holds $OH\cdot OW \cdot C\cdot FH\cdot FW$ numbers against the input's
        $C\cdot H\cdot W$: every pixel is copied once per window that reads it (the counts above). With
        "SAME" padding $OH \approx H/s$, so

        $$\frac{\text{bytes}(\phi)}{\text{bytes}(I)} = \frac{OH\cdot OW}{H\cdot W}\,FH\cdot FW
          \approx \frac{\prod k}{\prod s} = \frac{k^2}{s^2}.$$

        Dilation does not change it (the same number of windows, each still reads $FH\cdot FW$ pixels). Below,
        the ratio of the bytes of `im2col`'s output to the input's, for a $3\times32\times32$ float32 image; the
        output shape comes from `jax.eval_shape(jaxconv.im2col, ...)`, which traces im2col without computing it.
        """
    ),
    code(
        """
        x = jax.ShapeDtypeStruct((1, 3, 32, 32), jnp.float32)
        x_bytes = x.size * x.dtype.itemsize


        def cols_bytes(kernel, **config):
            cols = jax.eval_shape(lambda v: jaxconv.im2col(v, kernel, **config), x)
            return cols.size * cols.dtype.itemsize


        kernels = range(1, 8)
        fig, ax = plt.subplots(figsize=(8, 5))
        for stride, color in zip((1, 2, 3), ("tab:blue", "tab:orange", "tab:green")):
            ratios = []
            for k in kernels:
                geometry = jaxconv.conv_geometry((32, 32), (k, k), stride=stride, padding="SAME")
                ratios.append(cols_bytes(k, stride=stride, padding="SAME") / x_bytes)
                assert ratios[-1] == geometry.num_windows * k * k / (32 * 32)
            ax.plot(kernels, ratios, "o-", color=color, label=f"stride {stride}: bytes(im2col) / bytes(input)")
            formula = [k * k / stride**2 for k in kernels]
            ax.plot(kernels, formula, "--", color=color, alpha=0.6, label=f"stride {stride}: $k^2/s^2$")
        dilated = [cols_bytes(k, dilation=2, padding="SAME") / x_bytes for k in kernels]
        ax.plot(kernels, dilated, "x", color="black", markersize=9, label="stride 1, dilation 2: bytes(im2col) / bytes(input)")
        ax.set_yscale("log")
        ax.set_xlabel("kernel size k (k x k)")
        ax.set_ylabel("bytes(phi) / bytes(input)")
        ax.set_title("im2col's memory blow-up, 3x32x32 input, SAME padding")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        plt.show()
        """
    ),
    md(
        r"""
        For real layers the blow-up is large in absolute terms, which is why `jaxconv.conv` never holds $\phi$
        for a whole large batch at once: it processes the batch in chunks of images so that $\phi$ stays under
        `max_cols_bytes` (8 MiB by default), and its backward pass rebuilds $\phi$ instead of keeping it
        from the forward pass. The sizes below come from `jaxconv.conv_geometry` alone (nothing is allocated),
        float32, batch 64.
        """
    ),
    code(
        """
        LAYERS = [  # name, (C, H, W), kernel, stride, padding
            ("ResNet stem 7x7/2", (3, 224, 224), 7, 2, 3),
            ("3x3 conv, 64 ch, 56x56", (64, 56, 56), 3, 1, 1),
            ("3x3/2 conv, 128 ch, 56x56", (128, 56, 56), 3, 2, 1),
            ("1x1 conv, 256 ch, 56x56", (256, 56, 56), 1, 1, 0),
            ("5x5 conv, 32 ch, 28x28", (32, 28, 28), 5, 1, 2),
        ]
        batch, itemsize, mib = 64, 4, 2**20
        print(f"{'layer':<28} {'input MiB':>10} {'phi MiB':>10} {'ratio':>7} {'k^2/s^2':>8}")
        for name, (channels, h, w), k, s, p in LAYERS:
            geometry = jaxconv.conv_geometry((h, w), (k, k), stride=s, padding=p)
            input_bytes = batch * channels * h * w * itemsize
            phi_bytes = batch * geometry.num_windows * channels * geometry.window_size * itemsize
            ratio = phi_bytes / input_bytes
            print(f"{name:<28} {input_bytes / mib:>10.1f} {phi_bytes / mib:>10.1f} {ratio:>7.2f} {k * k / s**2:>8.2f}")
        """
    ),
]


# ---------------------------------------------------------------------------------------------
# 03: the custom VJP beside lax's autodiff
# ---------------------------------------------------------------------------------------------

CUSTOM_VJP_VS_LAX = [
    md(
        r"""
        # 03 · The custom VJP beside `jax.grad` of `lax.conv_general_dilated`

        `jaxconv.conv` is a `jax.custom_vjp`: JAX does not differentiate its im2col and GEMM, it calls the
        backward pass derived in the note,

        $$\frac{\partial L}{\partial F_f} = \phi(I)^T\,\frac{\partial L}{\partial O_f}, \qquad
          \frac{\partial L}{\partial \phi(I)} = \frac{\partial L}{\partial O_f}\,F_f^T, \qquad
          \frac{\partial L}{\partial I} = \mathrm{col2im}\Big(\frac{\partial L}{\partial \phi(I)}\Big).$$

        `lax.conv_general_dilated` is differentiated by JAX itself, whose transpose rules express the
        gradients of a convolution as two more convolutions. This notebook puts the two side by side:

        1. the programs `jax.grad` builds through each (their jaxprs), where the note's formulas can be read
           off ours line by line;
        2. values, gradients and times on a few small cases, measured by `jaxconv.compare`.

        Everything is float32, what a network trains in; notebooks 01 and 02 used float64 to check identities
        to rounding.
        """
    ),
    code(
        """
        import collections

        import jax
        import jax.numpy as jnp
        import matplotlib.pyplot as plt
        import numpy as np
        from jax import lax

        import jaxconv
        from jaxconv.compare import PRESETS, TOLERANCES, compare, format_results

        %matplotlib inline
        plt.rcParams.update({"figure.dpi": 90, "figure.facecolor": "white"})


        def equations(jaxpr):
            \"\"\"Every equation of a jaxpr, and of the jaxprs nested in its equations' parameters (jit, scan, ...).\"\"\"
            for eqn in getattr(jaxpr, "jaxpr", jaxpr).eqns:  # a ClosedJaxpr holds its Jaxpr in .jaxpr
                yield eqn
                for value in eqn.params.values():
                    for inner in value if isinstance(value, (tuple, list)) else (value,):
                        if hasattr(inner, "eqns"):
                            yield from equations(inner)


        def primitive_counts(jaxpr):
            return collections.Counter(eqn.primitive.name for eqn in equations(jaxpr))
        """
    ),
    md(
        r"""
        ## 1. What `jax.grad` traces

        A batch of $N = 2$ images with $C = 3$ channels of $5\times5$ pixels, $FN = 4$ filters of $2\times2$,
        stride 1, no padding, so $OH = OW = 4$. The batch's $\phi$ stacks the images' windows as rows:
        $M = N\cdot OH\cdot OW = 32$ rows and $K = C\cdot FH\cdot FW = 12$ columns. The three sizes differ, so
        a matrix's shape says which of the note's matrices it is. The loss is $L = \sum O \odot G$ for a fixed
        random $G$, so that $\partial L/\partial O = G$ (the loss `jaxconv.compare` uses too), and we ask for
        the gradient with respect to both the images and the filters.
        """
    ),
    code(
        """
        N, C, H, W = 2, 3, 5, 5
        FN, FH, FW = 4, 2, 2
        key_x, key_w, key_g = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(key_x, (N, C, H, W))
        w = jax.random.normal(key_w, (FN, C, FH, FW))
        OH, OW = jaxconv.conv_geometry((H, W), (FH, FW)).out_spatial
        M, K = N * OH * OW, C * FH * FW
        G = jax.random.normal(key_g, (N, FN, OH, OW))  # dL/dO
        print(f"OH, OW = {OH}, {OW};  phi: (M, K) = ({M}, {K});  F_f: (K, FN) = ({K}, {FN})")


        def lax_conv(x, w):
            return lax.conv_general_dilated(x, w, window_strides=(1, 1), padding="VALID")


        grad_ours = jax.grad(lambda x, w: jnp.sum(jaxconv.conv(x, w) * G), argnums=(0, 1))
        grad_lax = jax.grad(lambda x, w: jnp.sum(lax_conv(x, w) * G), argnums=(0, 1))
        for name, got, want in zip(("dL/dx", "dL/dw"), grad_ours(x, w), grad_lax(x, w)):
            error = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
            print(f"{name}: max |ours - lax| / max |lax| = {error:.1e}")
            assert error < TOLERANCES["float32"], (name, error)
        """
    ),
    md(
        r"""
        ### lax: three convolutions

        `jax.make_jaxpr` prints the program JAX traces. Through `lax.conv_general_dilated` it is short: the
        forward convolution (the first `conv_general_dilated`), then the two transposes JAX derives for it,
        each itself a `conv_general_dilated` with other dimension numbers. $\partial L/\partial w$ convolves
        the images with the cotangent, the batch playing the role of the channels that are summed over;
        $\partial L/\partial x$ convolves the cotangent, padded by the kernel size minus one, with the filters
        flipped in space (`rev`) and their input and output channels swapped.
        """
    ),
    code(
        """
        jaxpr_lax = jax.make_jaxpr(grad_lax)(x, w)
        print(jaxpr_lax.pretty_print(use_color=False))
        counts_lax = primitive_counts(jaxpr_lax)
        print(dict(counts_lax))
        assert counts_lax["conv_general_dilated"] == 3, counts_lax  # the forward and its two transposes
        """
    ),
    md(
        r"""
        ### jaxconv: gathers, matrix products and pads

        Ours is longer, and has no convolution primitive at all. It is easiest read from the bottom: the
        outer program calls the forward pass and then the backward pass, the two halves of the custom VJP,
        each a nested `jit` printed above it. In them:

        * **im2col** is the `gather` (after a `pad`, empty here, for the convolution's padding): it reads the
          windows of the padded images into $\phi^T$, reshaped to $(K, M) = (12, 32)$. The backward pass
          builds $\phi$ again from the images instead of keeping it from the forward pass (for a real layer
          $\phi$ is many times larger than the input; see notebook 02);
        * **the filters** `w` are reshaped and transposed into $F_f$, $(K, FN) = (12, 4)$;
        * **the GEMMs** are the `dot_general`s: the forward's $O_f^T = F_f^T \phi^T$ and, in the backward
          pass, $\partial L/\partial F_f = \phi^T\,\partial L/\partial O_f$, contracting over the $M = 32$
          rows, and $(\partial L/\partial\phi)^T = F_f\,(\partial L/\partial O_f)^T$, contracting over the
          $FN = 4$ filters. The library holds $\phi$ and $O_f$ transposed (the natural layout of an NCHW
          output); the leading axis of size 1 is the group axis of grouped convolutions;
        * **col2im** is the rest of the backward pass: one `slice` per kernel offset picks that offset's
          rows of $(\partial L/\partial\phi)^T$, a `pad` puts them back where the offset's pixels sit in the
          image, and a `reduce_sum` over their `stack` sums the $FH\cdot FW = 4$ of them: a pixel read by several windows collects
          all their gradients. A last `pad` and `slice` would crop the convolution's padding (there is none here).

        Finally $\partial L/\partial F_f$ is transposed and reshaped to the filters' shape $(FN, C, FH, FW)$.
        """
    ),
    code(
        """
        jaxpr_ours = jax.make_jaxpr(grad_ours)(x, w)
        print(jaxpr_ours.pretty_print(use_color=False))
        """
    ),
    md(
        r"""
        The same, counted. We walk the program, nested `jit`s included, and check: no convolution primitive;
        two im2col gathers (forward, and backward rebuilding $\phi$); three `dot_general`s, whose operand and
        output shapes are those of the note's three products; and at least $FH\cdot FW$ pads for col2im.
        A shape is written without its size-1 group axis.
        """
    ),
    code(
        """
        counts_ours = primitive_counts(jaxpr_ours)
        print(dict(counts_ours))
        assert "conv_general_dilated" not in counts_ours, counts_ours
        assert counts_ours["gather"] == 2, counts_ours
        assert counts_ours["pad"] >= FH * FW, counts_ours

        # Which product each dot_general computes, from the sizes of its output (M, K, FN all differ).
        PRODUCTS = {
            frozenset((FN, M)): "forward:  O_f^T = F_f^T phi^T",
            frozenset((K, FN)): "backward: dL/dF_f = phi^T dL/dO_f",
            frozenset((K, M)): "backward: (dL/dphi)^T = F_f (dL/dO_f)^T",
        }
        found = []
        for eqn in equations(jaxpr_ours):
            if eqn.primitive.name == "dot_general":
                squeeze = lambda shape: tuple(d for d in shape if d != 1)
                operands = " x ".join(str(squeeze(v.aval.shape)) for v in eqn.invars)
                out = squeeze(eqn.outvars[0].aval.shape)
                found.append(PRODUCTS[frozenset(out)])
                print(f"dot_general {operands:<20} -> {str(out):<9} {found[-1]}")
        assert sorted(found) == sorted(PRODUCTS.values()), found
        """
    ),
    md(
        r"""
        ## 2. Errors and times on small cases

        `jaxconv.compare.compare` runs each case through `jaxconv.conv` and through lax on the same random
        inputs, compares the output and the gradients $\partial L/\partial x$, $\partial L/\partial w$ (and
        $\partial L/\partial b$ with a bias) against lax at `precision=HIGHEST`, and times the jitted forward
        and the jitted `jax.value_and_grad`, the two implementations called by turns so that machine noise
        hits both alike. A relative error is the largest absolute error divided by the largest absolute value
        of the reference; float32's tolerance is $10^{-4}$.

        The cases are from the `cpu-small` preset, tiny ones of each kind: a 2-d convolution with padding and
        bias, a strided one with "SAME" padding, a grouped and dilated one with uneven padding, and a strided
        1-d one. (The preset's 3-d case is left out to keep the notebook quick: each case compiles six
        programs. `jaxconv compare` runs it, and the test suite checks 3-d convolutions.)

        **The times here are indicative only.** The cases are tiny, each is timed for a fraction of a second,
        and the machine that ran this notebook may have been busy with other work; at these sizes the
        fixed cost of a call weighs as much as the arithmetic. The measurement is the benchmark,
        `benchmarks/run.py`, on CNN-sized layers with many repeats and settled memory allocation; its
        results are in `benchmarks/RESULTS.md`.
        """
    ),
    code(
        """
        cases = [case for case in PRESETS["cpu-small"] if case.name != "conv3d"]
        for case in cases:
            print(f"{case.name:<8} {case.spec}")
        results = compare(cases, repeats=5, min_time=0.02, torch=False)
        print()
        print(format_results(results))

        tolerance = TOLERANCES["float32"]
        eps = float(jnp.finfo(jnp.float32).eps)
        for result in results:
            assert result.ok and result.max_rel_error <= tolerance, (result.case.name, result.errors)
            assert result.max_rel_error < 100 * eps, (result.case.name, result.errors)  # roundoff, not a bug
        """
    ),
    code(
        """
        names = [result.case.name for result in results]
        positions = np.arange(len(results))
        fig, (ax_time, ax_error) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")

        for offset, kind, label in [(-0.2, "forward", "forward"), (0.2, "value_and_grad", "value_and_grad")]:
            ratios = [result.ratio(kind) for result in results]
            ax_time.bar(positions + offset, ratios, width=0.4, label=label)
        ax_time.axhline(1.0, color="black", linewidth=1, linestyle="--", label="same time as lax")
        ax_time.set_xticks(positions, names)
        ax_time.set_xlabel("case")
        ax_time.set_ylabel("median time, jaxconv / lax")
        ax_time.set_title("Time ratio jaxconv / lax (below 1: jaxconv faster); indicative only")
        ax_time.legend(fontsize=8)

        markers = {"out": "o", "dx": "s", "dw": "^", "db": "D"}
        labels = {"out": "output", "dx": "dL/dx", "dw": "dL/dw", "db": "dL/db"}
        for shift, (quantity, marker) in zip((-0.15, -0.05, 0.05, 0.15), markers.items()):
            xs = [p + shift for p, r in zip(positions, results) if quantity in r.errors]
            errors = [r.errors[quantity].rel for r in results if quantity in r.errors]
            ax_error.scatter(xs, errors, marker=marker, s=40, label=labels[quantity])
        ax_error.axhline(tolerance, color="tab:red", linestyle="--", label=f"float32 tolerance {tolerance:.0e}")
        ax_error.axhline(eps, color="0.5", linestyle=":", label=f"float32 machine epsilon {eps:.1e}")
        ax_error.set_yscale("log")
        ax_error.set_xticks(positions, names)
        ax_error.set_xlabel("case")
        ax_error.set_ylabel("max relative error vs lax at HIGHEST (log)")
        ax_error.set_title("Errors of jaxconv's output and gradients")
        ax_error.legend(fontsize=8, loc="center right")
        plt.show()
        """
    ),
    md(
        r"""
        The errors are of the order of float32's machine epsilon and far below the tolerance: the two
        implementations add the same products in different orders, and nothing else differs. The times are
        this run's, on tiny cases; `benchmarks/RESULTS.md` has the benchmark's, on real layer sizes.

        Notebook 04 trains a CNN with each implementation.
        """
    ),
]


# ---------------------------------------------------------------------------------------------
# 04: training
# ---------------------------------------------------------------------------------------------

TRAINING = [
    md(
        r"""
        # 04 · Training a CNN on the custom VJP

        The real test of a backward pass is training. `jaxconv.train.fit` trains `jaxconv.nn.cnn`, a small CNN
        (conv $3\times3$, 16 filters → ReLU → $2\times2$ max pool → conv $3\times3$, 32 filters → ReLU →
        max pool → dense, 10 classes), on scikit-learn's $8\times8$ handwritten digits with Adam, mean softmax
        cross-entropy and batches of 32. With `conv="im2col"` every convolution is `jaxconv.conv`, whose
        gradients are the note's formulas; with `conv="lax"` it is `lax.conv_general_dilated`, differentiated
        by JAX.

        We train the model twice with the same seed: the same initial parameters, the same train/test split,
        the same batches in the same order. The two runs then differ only by the rounding of their
        convolutions, so their curves should lie on top of each other, and they do. Then we look at what the
        im2col run learned: its first-layer filters and its confusion matrix on the test set.
        """
    ),
    code(
        """
        import jax
        import jax.numpy as jnp
        import matplotlib.pyplot as plt
        import numpy as np

        from jaxconv.train import TrainConfig, fit, init_state, load_data

        %matplotlib inline
        plt.rcParams.update({"figure.dpi": 90, "figure.facecolor": "white"})
        """
    ),
    md(
        r"""
        ## 1. The data

        1797 grey images of digits, $8\times8$ pixels with values 0 to 16, split 80/20 into train and test,
        stratified by class, by the config's seed; each pixel is standardised with the training images' mean
        and standard deviation. `load_data(config)` is what `fit` loads; we load it once and pass it to both
        runs.
        """
    ),
    code(
        """
        EPOCHS = 10
        configs = {conv: TrainConfig(conv=conv, epochs=EPOCHS, seed=0) for conv in ("im2col", "lax")}
        data = load_data(configs["im2col"])
        print(f"{data.name}: train {data.x_train.shape}, test {data.x_test.shape}, {data.num_classes} classes")
        print("test images per class:", np.bincount(data.y_test, minlength=data.num_classes))

        fig, axes = plt.subplots(1, 10, figsize=(10, 1.6), layout="constrained")
        for digit, ax in enumerate(axes):
            ax.imshow(data.x_train[np.flatnonzero(data.y_train == digit)[0], 0], cmap="gray_r")
            ax.set_title(f"label {digit}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.supxlabel("8 pixels", fontsize=9)
        fig.supylabel("8 pixels", fontsize=9)
        fig.suptitle("The first training image of each class (standardised)")
        plt.show()
        """
    ),
    md(
        r"""
        ## 2. Training with each backend

        `fit` compiles a train step (`jax.value_and_grad` of the loss and an optax update) once, then runs
        the epochs; after each it evaluates the test set. The lines below are `fit`'s log, one per epoch;
        the times in it are this run's, on whatever else the machine was doing, and say little about the
        speed of either convolution (the benchmark in `benchmarks/` measures that).
        """
    ),
    code(
        """
        results = {}
        for conv, config in configs.items():
            print(f"--- conv={conv}")
            results[conv] = fit(config, data=data, log=print)
        """
    ),
    md(
        r"""
        Per epoch, the two runs' losses side by side. Relative differences at the level of float32's roundoff
        (the cell asserts below $10^{-4}$) mean the runs followed the same trajectory: every step of the im2col
        run received the gradient the lax run received, to rounding, for all the epochs.
        """
    ),
    code(
        """
        ours, theirs = results["im2col"].history, results["lax"].history
        print(
            f"{'epoch':>5} {'train loss im2col':>18} {'lax':>12} {'rel. diff':>10}  {'test loss im2col':>17} {'lax':>12}"
            f" {'rel. diff':>10}  {'test acc im2col':>15} {'lax':>7}"
        )
        worst = 0.0
        for a, b in zip(ours, theirs):
            diffs = [abs(a[key] - b[key]) / abs(b[key]) for key in ("train_loss", "test_loss")]
            worst = max(worst, *diffs)
            print(
                f"{a['epoch']:>5} {a['train_loss']:>18.8f} {b['train_loss']:>12.8f} {diffs[0]:>10.1e}"
                f"  {a['test_loss']:>17.8f} {b['test_loss']:>12.8f} {diffs[1]:>10.1e}"
                f"  {a['test_accuracy']:>15.2%} {b['test_accuracy']:>7.2%}"
            )
        print(f"largest relative difference of the losses: {worst:.1e}")
        assert len(ours) == len(theirs) == EPOCHS
        assert worst < 1e-4, worst

        leaves = [jax.tree.leaves(results[conv].params) for conv in ("im2col", "lax")]
        param_diff = max(float(jnp.max(jnp.abs(p - q))) for p, q in zip(*leaves))
        print(f"largest difference of the final parameters: {param_diff:.1e}")
        assert param_diff < 1e-4, param_diff

        for conv, result in results.items():
            print(f"final test accuracy, conv={conv}: {result.test_accuracy:.2%}")
            assert result.test_accuracy >= 0.95, (conv, result.test_accuracy)
        differing_images = round(abs(results["im2col"].test_accuracy - results["lax"].test_accuracy) * len(data.y_test))
        assert differing_images <= 2, differing_images
        """
    ),
    code(
        """
        epochs = [entry["epoch"] for entry in ours]
        fig, (ax_loss, ax_accuracy) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
        styles = {
            "im2col": dict(linestyle="-", marker="o", markersize=6),
            "lax": dict(linestyle="--", marker="x", markersize=8),
        }
        colors = {"train": "tab:blue", "test": "tab:orange"}
        for conv, result in results.items():
            for split, color in colors.items():
                label = f"{split}, conv={conv}"
                loss = [entry[f"{split}_loss"] for entry in result.history]
                accuracy = [100 * entry[f"{split}_accuracy"] for entry in result.history]
                ax_loss.plot(epochs, loss, color=color, label=label, **styles[conv])
                ax_accuracy.plot(epochs, accuracy, color=color, label=label, **styles[conv])
        ax_loss.set_yscale("log")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("mean cross-entropy loss (log)")
        ax_loss.set_title("Loss: im2col (custom VJP) and lax, same seed")
        ax_accuracy.set_xlabel("epoch")
        ax_accuracy.set_ylabel("accuracy (%)")
        ax_accuracy.set_title("Accuracy: im2col (custom VJP) and lax, same seed")
        for ax in (ax_loss, ax_accuracy):
            ax.set_xticks(epochs)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        plt.show()
        """
    ),
    md(
        r"""
        The crosses (lax) sit in the circles (im2col) at every epoch. The train loss is the mean over the
        epoch's batches, taken while the parameters were still changing; the test loss is measured after
        the epoch.

        ## 3. The learned first-layer filters

        The first convolution has 16 filters of shape $(1, 3, 3)$ (one input channel). Top row: the
        parameters at initialisation (He normal, drawn from the seed, the same for both runs); bottom row:
        after training with the im2col backend. One colour scale for all, blue negative and red positive.
        Training adjusts these filters rather than redrawing them: each bottom image is recognisably the one
        above it, changed by the relative amount printed below.
        """
    ),
    code(
        """
        result = results["im2col"]
        initial_params, _, _ = init_state(result.config, result.model, data.image_shape)
        learned = np.asarray(result.params[0]["w"])  # the first Conv layer's params: {"w": (16, 1, 3, 3), "b": (16,)}
        filters = {"initial": np.asarray(initial_params[0]["w"]), f"after {EPOCHS} epochs": learned}
        lax_learned = np.asarray(results["lax"].params[0]["w"])
        filter_diff = np.abs(learned - lax_learned).max()
        print(f"first-layer filters: {learned.shape}; max |im2col - lax| after training: {filter_diff:.1e}")
        assert filter_diff < 1e-4, filter_diff
        change = np.linalg.norm(learned - filters["initial"]) / np.linalg.norm(filters["initial"])
        print(f"relative change of the filters in training, |after - initial| / |initial|: {change:.0%}")

        bound = max(np.abs(f).max() for f in filters.values())
        num_filters = filters["initial"].shape[0]
        fig, axes = plt.subplots(2, num_filters, figsize=(12, 2.4), layout="constrained")
        for row, (when, values) in zip(axes, filters.items()):
            for f, ax in enumerate(row):
                image = ax.imshow(values[f, 0], cmap="RdBu_r", vmin=-bound, vmax=bound)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{f}", fontsize=8)
            row[0].set_ylabel(when, fontsize=8)
        fig.colorbar(image, ax=axes, shrink=0.9, label="weight")
        fig.supxlabel("filter number; each image is a 3x3 kernel (columns: kernel column, rows: kernel row)", fontsize=9)
        fig.suptitle("First-layer filters of the im2col run: at initialisation (top) and after training (bottom)")
        plt.show()
        """
    ),
    md(
        r"""
        ## 4. Confusion matrix on the test set

        Predictions are the argmax of the logits, `result.model.apply(result.params, x_test)`; row $i$, column
        $j$ counts the test images of digit $i$ classified as $j$. The diagonal holds the correct ones; its
        sum over the number of test images is the test accuracy that `fit` reported.
        """
    ),
    code(
        """
        logits = jax.jit(result.model.apply)(result.params, data.x_test)
        predicted = np.asarray(jnp.argmax(logits, axis=-1))
        confusion = np.zeros((data.num_classes, data.num_classes), dtype=int)
        np.add.at(confusion, (data.y_test, predicted), 1)
        correct = int(np.trace(confusion))
        accuracy = correct / len(predicted)
        print(f"correct: {correct} of {len(predicted)} = {accuracy:.2%} (fit reported {result.test_accuracy:.2%})")
        assert abs(correct - round(result.test_accuracy * len(predicted))) <= 1
        errors = [(int(t), int(p)) for t, p in zip(data.y_test, predicted) if t != p]
        print("misclassified (true -> predicted):", ", ".join(f"{t} -> {p}" for t, p in errors))

        fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
        image = ax.imshow(confusion, cmap="Blues")
        for (i, j), count in np.ndenumerate(confusion):
            if count:
                color = "white" if count > 0.6 * confusion.max() else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=9, color=color)
        ax.set_xticks(range(data.num_classes))
        ax.set_yticks(range(data.num_classes))
        ax.set_xlabel("predicted digit")
        ax.set_ylabel("true digit")
        ax.set_title(f"Test-set confusion matrix, conv=im2col ({correct}/{len(predicted)} correct)")
        fig.colorbar(image, ax=ax, label="test images")
        plt.show()
        """
    ),
    md(
        r"""
        ## Summary

        The same CNN, the same seed, trained with the note's hand-derived backward pass and with JAX's own
        differentiation of `lax.conv_general_dilated`, follows the same trajectory to float32 rounding: the
        same losses at every epoch, the same final parameters, the same test accuracy to within a test image
        or two. The backward pass is not only right on one convolution (notebooks 01 and 03): it trains a
        network.

        The command line does the same: `jaxconv train` and `jaxconv train --conv lax`.
        """
    ),
]

NOTEBOOKS = {
    "01_derivation": DERIVATION,
    "02_im2col_explorer": IM2COL_EXPLORER,
    "03_custom_vjp_vs_lax": CUSTOM_VJP_VS_LAX,
    "04_training": TRAINING,
}


# ---------------------------------------------------------------------------------------------
# build and execute
# ---------------------------------------------------------------------------------------------


def new_notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for number, cell in enumerate(cells):
        cell = nbformat.from_dict(cell)  # a copy: the module-level cells stay unexecuted
        cell.id = f"cell-{number:02d}"
        nb.cells.append(cell)
    return nb


def this_python_kernel_env(kernels_root: pathlib.Path) -> dict[str, str]:
    """An environment whose ``python3`` kernel is this interpreter, with the test suite's strict JAX."""
    from ipykernel.kernelspec import write_kernel_spec

    write_kernel_spec(kernels_root / "kernels" / "python3")  # argv[0] = sys.executable
    return {
        "JUPYTER_PATH": str(kernels_root),
        "JAX_NUMPY_DTYPE_PROMOTION": "strict",
        "JAX_NUMPY_RANK_PROMOTION": "raise",
    }


def execute(nb: nbformat.NotebookNode) -> float:
    """Runs ``nb`` in place, top to bottom, in ``notebooks/``; returns the seconds it took."""
    start = time.perf_counter()
    NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    ).execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="build only notebooks whose name starts with one of these")
    args = parser.parse_args(argv)
    names = [name for name in NOTEBOOKS if not args.prefixes or name.startswith(tuple(args.prefixes))]
    if not names:
        parser.error(f"no notebook matches {args.prefixes}; known: {', '.join(NOTEBOOKS)}")
    with tempfile.TemporaryDirectory() as kernels_root:
        os.environ.update(this_python_kernel_env(pathlib.Path(kernels_root)))
        for name in names:
            nb = new_notebook(NOTEBOOKS[name])
            seconds = execute(nb)
            path = NOTEBOOKS_DIR / f"{name}.ipynb"
            nbformat.validate(nb)
            nbformat.write(nb, path)
            print(f"{path.relative_to(NOTEBOOKS_DIR.parent)}: executed in {seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
