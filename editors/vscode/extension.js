// Starts `mcpdsl lsp` (stdio) for .mcp files; everything else is the server's job.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const configured = vscode.workspace.getConfiguration("mcpdsl").get("server.command");
  const command = Array.isArray(configured) && configured.length > 0 ? configured : ["mcpdsl", "lsp"];
  const serverOptions = {
    command: command[0],
    args: command.slice(1),
    transport: TransportKind.stdio,
  };
  const clientOptions = {
    documentSelector: [{ language: "mcp" }],
    synchronize: {
      fileEvents: vscode.workspace.createFileSystemWatcher("**/*.mcp"),
    },
  };
  client = new LanguageClient("mcpdsl", "mcpdsl", serverOptions, clientOptions);
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
