#!/usr/bin/env node
// Compiles CheckpointAnchor.sol and EcdsaAnchor.sol with solcjs 0.8.30 (evmVersion prague,
// optimizer on, 200 runs) and writes out/<Name>.json = { abi, bytecode, solc, evmVersion }.
// The output is deterministic; the JSON files are committed and included by the Rust crate.
//
// solc comes from the chain tools directory set up by scripts/install-chain-tools.sh
// (run automatically here; idempotent and offline once installed).
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOLC_VERSION = '0.8.30';
const EVM_VERSION = 'prague';
const CONTRACTS = ['CheckpointAnchor', 'EcdsaAnchor'];

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');

/// Runs the installer and returns { anvil, nodeModules }.
export function chainTools() {
    const out = execFileSync('bash', [join(repo, 'scripts', 'install-chain-tools.sh')], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
    });
    const anvil = out.trim().split('\n').pop();
    const idx = anvil.lastIndexOf('/node_modules/');
    if (idx < 0) throw new Error(`unexpected anvil path from installer: ${anvil}`);
    return { anvil, nodeModules: anvil.slice(0, idx + '/node_modules'.length) };
}

export function compile(nodeModules) {
    const require = createRequire(join(nodeModules, '..', 'package.json'));
    const solc = require('solc');
    const version = solc.version();
    if (!version.startsWith(SOLC_VERSION + '+')) {
        throw new Error(`need solc ${SOLC_VERSION}, found ${version}`);
    }
    const sources = {};
    for (const name of CONTRACTS) {
        sources[`${name}.sol`] = { content: readFileSync(join(here, `${name}.sol`), 'utf8') };
    }
    const input = {
        language: 'Solidity',
        sources,
        settings: {
            evmVersion: EVM_VERSION,
            optimizer: { enabled: true, runs: 200 },
            outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
        },
    };
    const output = JSON.parse(solc.compile(JSON.stringify(input)));
    const errors = (output.errors || []).filter((e) => e.severity === 'error');
    for (const e of output.errors || []) console.error(e.formattedMessage);
    if (errors.length) throw new Error('compilation failed');
    const result = {};
    for (const name of CONTRACTS) {
        const c = output.contracts[`${name}.sol`][name];
        result[name] = {
            abi: c.abi,
            bytecode: '0x' + c.evm.bytecode.object,
            solc: SOLC_VERSION,
            evmVersion: EVM_VERSION,
        };
    }
    return result;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    const { nodeModules } = chainTools();
    const result = compile(nodeModules);
    const outDir = join(here, 'out');
    mkdirSync(outDir, { recursive: true });
    for (const [name, art] of Object.entries(result)) {
        const file = join(outDir, `${name}.json`);
        writeFileSync(file, JSON.stringify(art, null, 2) + '\n');
        console.log(`wrote ${file} (${(art.bytecode.length - 2) / 2} bytes of init code)`);
    }
}
