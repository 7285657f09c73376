"""Tests for ann.theory's Gaussian experiment: Bayes accuracy, Theorem 5's critical point,
trained quadratic neuron."""

import numpy as np
import pandas as pd
import pytest

from ann.engine import torch_threads
from ann.errors import ConfigError
from ann.theory import bayes, figures, fit, gaussian, problems

N_CHECK = 100_000


def _points(classes, n, seed):
    return problems.sample_gaussian_classes(classes, n, np.random.default_rng(seed))


def _random_k3_d4():
    return problems.random_gaussian_classes(3, 4, seed=1, spread=1.0, eig_range=(0.2, 2.0))


def _unequal_priors():
    base = _random_k3_d4()
    return problems.GaussianClasses(base.means, base.covs, np.array([0.5, 0.3, 0.2]))


@pytest.mark.parametrize(
    "make_classes",
    [problems.talk_example, _random_k3_d4, _unequal_priors],
    ids=["talk_example", "random_k3_d4", "unequal_priors"],
)
def test_critical_point_gives_bayes_decisions(make_classes):
    classes = make_classes()
    X, _ = _points(classes, N_CHECK, 7)
    expected = bayes.bayes_predict(classes, X)
    np.testing.assert_array_equal(fit.critical_point(classes).predict(X), expected)


def test_critical_point_scores_are_log_joint_densities_up_to_a_constant():
    classes = _unequal_priors()
    X, _ = _points(classes, 1000, 3)
    diff = fit.critical_point(classes).scores(X) - bayes.log_joint_densities(classes, X)
    np.testing.assert_allclose(diff, 0.5 * classes.d * np.log(2 * np.pi), rtol=0, atol=1e-9)


def test_paper_sign_is_argmin_not_argmax():
    classes = problems.talk_example()
    X, y = _points(classes, N_CHECK, 8)
    paper_scores = fit.paper_critical_point(classes).scores(X)
    expected = bayes.bayes_predict(classes, X)
    np.testing.assert_array_equal(np.argmin(paper_scores, axis=1), expected)
    assert np.mean(np.argmax(paper_scores, axis=1) == y) < 0.1


@pytest.mark.parametrize("make_classes", [problems.talk_example, _unequal_priors])
def test_critical_point_is_stationary_for_the_population_loss(make_classes):
    classes = make_classes()
    X, y = _points(classes, 200_000, 11)
    star = fit.critical_point(classes)
    grad, se = fit.quadratic_loss_gradient(star, X, y)
    assert np.max(np.abs(grad / se)) < 5.0
    scaled = problems.QuadraticParams(0.8 * star.A, 0.8 * star.w, 0.8 * star.b)
    grad_off, se_off = fit.quadratic_loss_gradient(scaled, X, y)
    assert np.max(np.abs(grad_off / se_off)) > 20.0


def test_critical_point_loss_not_above_trained_neuron():
    classes = problems.talk_example()
    X_train, y_train = _points(classes, 1000, 21)
    X, y = _points(classes, N_CHECK, 22)
    trained = fit.train_quadratic_neuron(X_train, y_train, classes.k)

    def per_sample_loss(params):
        scores = params.scores(X)
        return np.logaddexp.reduce(scores, axis=1) - scores[np.arange(len(y)), y]

    diff = per_sample_loss(fit.critical_point(classes)) - per_sample_loss(trained)
    assert diff.mean() < 3 * diff.std(ddof=1) / np.sqrt(len(diff))


@pytest.mark.parametrize(
    "classes",
    [problems.talk_example(), problems.random_gaussian_classes(3, 2, seed=0)],
    ids=["talk_example", "random_k3_d2"],
)
def test_integral_and_monte_carlo_agree(classes):
    exact = bayes.bayes_accuracy_integral_2d(classes)
    mc = bayes.bayes_accuracy_monte_carlo(classes, 1_000_000, seed=5)
    assert exact.error < 1e-8
    assert 0 < mc.error < 1e-3
    assert abs(exact.value - mc.value) < 4 * mc.error


def test_talk_example_bayes_accuracy_value():
    assert bayes.bayes_accuracy_integral_2d(problems.talk_example()).value == pytest.approx(
        0.962536, abs=1e-6
    )


def test_identical_classes_give_one_half():
    example = problems.talk_example()
    twins = problems.GaussianClasses(example.means[[0, 0]], example.covs[[0, 0]], [0.5, 0.5])
    assert bayes.bayes_accuracy_integral_2d(twins).value == pytest.approx(0.5, abs=1e-10)
    assert bayes.bayes_accuracy_monte_carlo(twins, 10_000).value == pytest.approx(0.5, abs=1e-10)


def test_far_apart_classes_give_one():
    far = problems.GaussianClasses(
        np.array([[0.0, 0.0], [40.0, -40.0]]), np.array([np.eye(2), np.eye(2) * 2]), [0.5, 0.5]
    )
    assert bayes.bayes_accuracy_integral_2d(far).value == pytest.approx(1.0, abs=1e-9)
    far4 = problems.GaussianClasses(
        np.array([[0.0] * 4, [30.0] * 4, [-30.0] * 4]), np.array([np.eye(4)] * 3), [1 / 3] * 3
    )
    assert bayes.bayes_accuracy_monte_carlo(far4, 10_000).value == pytest.approx(1.0, abs=1e-9)


def test_bayes_accuracy_table():
    table = bayes.bayes_accuracy(problems.talk_example(), monte_carlo_samples=50_000)
    assert list(table.method) == ["monte_carlo", "integral"]
    assert list(table.columns) == ["method", "accuracy", "error", "n_samples"]
    assert list(bayes.bayes_accuracy(_random_k3_d4(), 1000).method) == ["monte_carlo"]
    with pytest.raises(ValueError):
        bayes.bayes_accuracy_integral_2d(_random_k3_d4())


def test_trained_quadratic_neuron_is_near_bayes_on_talk_example():
    # Over 100 training sets of 1000 samples the paired gap to the Bayes rule on the same
    # 1e5 test points was 0.12 +- 0.06 pp (max 0.32 pp); test-set noise on an accuracy near
    # 0.96 is sqrt(0.96 * 0.04 / 1e5) = 0.06 pp. A 1 pp margin is therefore > 10 sd.
    classes = problems.talk_example()
    X, y = _points(classes, 1000, 31)
    X_test, y_test = _points(classes, N_CHECK, 32)
    neuron = fit.train_quadratic_neuron(X, y, classes.k)
    acc = np.mean(neuron.predict(X_test) == y_test)
    bayes_acc = bayes.bayes_accuracy_integral_2d(classes).value
    assert abs(bayes_acc - acc) < 0.01
    similarity = fit.quadratic_similarity(neuron, classes)
    # min over the same 100 training sets: 0.988
    assert (similarity.cosine_difference > 0.95).all()
    assert np.allclose(neuron.A.sum(axis=0), 0.0, atol=1e-8)


def test_similarity_of_the_critical_point_is_one():
    classes = _random_k3_d4()
    table = fit.quadratic_similarity(fit.critical_point(classes), classes)
    np.testing.assert_allclose(table.cosine, 1.0)
    np.testing.assert_allclose(table.cosine_difference, 1.0)
    np.testing.assert_allclose(table.relative_error_difference, 0.0, atol=1e-12)


def test_matrix_cosine_ignores_scale_not_sign():
    a = np.array([[1.0, 0.2], [0.2, 3.0]])
    assert fit.matrix_cosine(a, 5 * a) == pytest.approx(1.0)
    assert fit.matrix_cosine(a, -a) == pytest.approx(-1.0)


def test_random_classes_are_seeded_and_valid():
    first = problems.random_gaussian_classes(3, 4, seed=2, eig_range=(0.5, 1.5))
    second = problems.random_gaussian_classes(3, 4, seed=2, eig_range=(0.5, 1.5))
    np.testing.assert_array_equal(first.covs, second.covs)
    eigs = np.linalg.eigvalsh(first.covs)
    assert eigs.min() >= 0.5 - 1e-12 and eigs.max() <= 1.5 + 1e-12


SMALL = {
    "n_train": 200,
    "n_test": 3000,
    "seeds": [0, 1],
    "mlp_hidden": 16,
    "mlp_steps": 60,
    "sweep_sizes": [20, 60],
    "sweep_seeds": [0, 1],
    "monte_carlo_samples": 20_000,
}


@pytest.fixture(scope="module")
def small_run():
    return gaussian.gaussian_experiment(SMALL)


def test_experiment_tables(small_run):
    assert set(small_run) == {"bayes", "accuracy", "similarity", "sweep", "sweep_summary", "timing"}
    accuracy = small_run["accuracy"]
    assert {"model", "seed", "n_train", "test_acc", "bayes_acc", "gap"} <= set(accuracy.columns)
    assert len(accuracy) == 2 * len(SMALL["seeds"])
    np.testing.assert_allclose(accuracy.gap, accuracy.bayes_acc - accuracy.test_acc)
    similarity = small_run["similarity"]
    assert list(similarity.columns[:4]) == ["seed", "class", "cosine", "cosine_difference"]
    sweep = small_run["sweep"]
    assert len(sweep) == 2 * 2 * len(SMALL["sweep_sizes"]) * len(SMALL["sweep_seeds"])
    assert set(sweep.problem) == {"talk_example", "random_k3_d4"}
    summary = small_run["sweep_summary"]
    assert (summary.n_seeds == len(SMALL["sweep_seeds"])).all()
    assert summary.test_acc_std.notna().all()


def test_experiment_is_deterministic(small_run):
    again = gaussian.gaussian_experiment(SMALL)
    for name in ("bayes", "accuracy", "similarity", "sweep", "sweep_summary"):
        pd.testing.assert_frame_equal(small_run[name], again[name])


def test_unknown_config_key_is_rejected():
    with pytest.raises(ConfigError, match=r"theory\.gaussian\.n_trian: unknown"):
        gaussian.gaussian_experiment({"n_trian": 10})


def test_figures_have_their_panels(small_run):
    config = gaussian.GaussianConfig.from_mapping(SMALL)
    drawn = [
        figures.plot_decision_boundaries(config),
        figures.plot_accuracy_vs_samples(small_run["sweep"]),
        figures.plot_similarity(small_run["similarity"]),
    ]
    assert [len(figure.axes) for figure in drawn] == [3, 2, 1]


def test_torch_threads_is_restored():
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
