import assert from "node:assert/strict";
import { WRITE_V2_PROTO } from "../../proto/data_model_protos.ts";
import { REPO_ROOT } from "../helpers/procs.ts";

Deno.test("the embedded write_v2.proto text equals its file byte for byte", async () => {
  assert.equal(WRITE_V2_PROTO, await Deno.readTextFile(`${REPO_ROOT}/proto/write_v2.proto`));
});
