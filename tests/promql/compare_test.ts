/** The differential test's comparator must see the differences it exists to find. */
import { assert, assertEquals } from "../helpers/assert.ts";
import { compareAnswers, inexactQuery } from "./compare.ts";

const ok = (resultType: string, result: unknown) => ({
  status: 200,
  body: { status: "success", data: { resultType, result } },
});

Deno.test("compareAnswers() finds differing values, series, types and errors", () => {
  const a = ok("vector", [{ metric: { a: "1" }, value: [1, "1.5"] }]);
  assertEquals(
    compareAnswers(a, ok("vector", [{ metric: { a: "1" }, value: [1, "1.5"] }]), false),
    [],
  );
  // One ulp apart: a difference, unless a tolerance is given.
  const ulp = ok("vector", [{ metric: { a: "1" }, value: [1, "1.5000000000000002"] }]);
  assert(compareAnswers(a, ulp, false).length);
  assertEquals(compareAnswers(a, ulp, false, 1e-12), []);
  assert(
    compareAnswers(
      a,
      ok("vector", [{ metric: { a: "1" }, value: [1, "1.50000000001"] }]),
      false,
      1e-12,
    )
      .length,
  );
  assert(
    compareAnswers(a, ok("vector", [{ metric: { a: "1" }, value: [1, "1.6"] }]), false).length,
  );
  assert(
    compareAnswers(a, ok("vector", [{ metric: { a: "2" }, value: [1, "1.5"] }]), false).length,
  );
  assert(compareAnswers(a, ok("vector", []), false).length);
  assert(compareAnswers(a, ok("matrix", []), false).length);
  assert(
    compareAnswers(a, ok("vector", [{ metric: { a: "1" }, value: [2, "1.5"] }]), false).length,
  );
  assert(
    compareAnswers(a, ok("vector", [{ metric: { a: "1" }, value: [1, "NaN"] }]), false).length,
  );
  const err = { status: 400, body: { status: "error", errorType: "bad_data", error: "x" } };
  assert(compareAnswers(a, err, false).length);
  assert(
    compareAnswers(
      { status: 422, body: { status: "error", errorType: "execution", error: "y" } },
      err,
      false,
    ).length,
  );
  const m1 = ok("matrix", [{ metric: {}, values: [[1, "1"], [2, "2"]] }]);
  assert(compareAnswers(m1, ok("matrix", [{ metric: {}, values: [[1, "1"]] }]), false).length);
  assert(
    compareAnswers(m1, ok("matrix", [{ metric: {}, values: [[1, "1"], [3, "2"]] }]), false).length,
  );
  // Order counts only when asked (sort, sort_desc).
  const two = (x: string, y: string) =>
    ok("vector", [{ metric: { a: x }, value: [1, "1"] }, { metric: { a: y }, value: [1, "1"] }]);
  assertEquals(compareAnswers(two("1", "2"), two("2", "1"), false), []);
  assert(compareAnswers(two("1", "2"), two("2", "1"), true).length);
});

Deno.test("inexactQuery() names only the queries Go's and JavaScript's math libraries may round apart", () => {
  for (
    const q of ["ln(x)", "log2(x)", "exp(x)", "cos(x)", "acosh(x)", "x atan2 3", "x ^ 2", "tanh(x)"]
  ) {
    assert(inexactQuery(q), q);
  }
  for (
    const q of [
      "rate(x[5m])",
      "sum(x)",
      "sqrt(x)",
      "x / 3",
      "stddev(x)",
      "histogram_quantile(0.9, x)",
      "expensive_total",
    ]
  ) {
    assert(!inexactQuery(q), q);
  }
});
