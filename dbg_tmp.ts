import { postgres } from "./deps.ts";
const sql = postgres("postgres://postgres@127.0.0.1:5432/scratch", { max: 2 });
await sql`create temp table if not exists tt (a int primary key)`;
async function copyText(s: string) {
  const stream = await sql`copy tt from stdin`.writable();
  console.log("got stream");
  await new Promise<void>((resolve, reject) => {
    stream.once("error", (e: Error) => {
      console.log("error ev", e.message);
      reject(e);
    });
    stream.once("finish", () => {
      console.log("finish");
      resolve();
    });
    stream.once("close", () => console.log("close"));
    stream.end(s);
  });
}
await copyText("1\n2\n");
console.log("first ok");
await copyText("1\n").catch((e) => console.log("caught", e.code));
console.log("done");
await sql.end();
