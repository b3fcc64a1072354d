import assert from "node:assert/strict";
import { TYPES_FULL_PROTO, WRITE_V2_PROTO } from "../../proto/data_model_protos.ts";
import { REPO_ROOT } from "../helpers/procs.ts";

Deno.test("the embedded data-model .proto texts equal their files byte for byte", async () => {
  assert.equal(WRITE_V2_PROTO, await Deno.readTextFile(`${REPO_ROOT}/proto/write_v2.proto`));
  assert.equal(TYPES_FULL_PROTO, await Deno.readTextFile(`${REPO_ROOT}/proto/types_full.proto`));
});
