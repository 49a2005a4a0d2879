// A stock vscode-jsonrpc client, as a VS Code extension would use it: spawns the sidecar given as
// argv[2], talks to it with StreamMessageReader/Writer (LSP Content-Length framing, the library's
// default), and prints one JSON line with what it saw. Used by tests/e2e/test_lsp_framing_e2e.py.
'use strict';
const { spawn } = require('child_process');
const rpc = require('vscode-jsonrpc/node');

async function main() {
  const child = spawn(process.argv[2], [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const connection = rpc.createMessageConnection(
    new rpc.StreamMessageReader(child.stdout),
    new rpc.StreamMessageWriter(child.stdin),
  );
  const deltas = [];
  connection.onNotification('stream/event', (params) => {
    if (params.event.type === 'text_delta') deltas.push(params.event.text);
  });
  connection.listen();
  const out = {};
  out.info = await connection.sendRequest('info', {});
  try {
    await connection.sendRequest('validate_key', { provider: 'openai', key: 'sk-bad' });
    out.unknown_field = 'no error';
  } catch (err) {
    out.unknown_field = { code: err.code, message: err.message, data: err.data };
  }
  if (process.env.OPENAI_BASE_URL) {
    out.stream = await connection.sendRequest('stream', {
      model: 'openai:gpt-4o-mini',
      messages: [{ role: 'user', content: 'Hello from vscode-jsonrpc' }],
    });
    out.deltas = deltas;
  }
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  connection.dispose();
  child.stdin.end();
  out.exit_code = await exited;
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + '\n');
  process.exit(1);
});
