// End-to-end test of CheckpointAnchor (threshold BLS, EIP-2537) and EcdsaAnchor against a
// real local chain: starts anvil (hardfork prague), deploys the committed artifacts in
// ../out, and checks hashing, verification, anchoring rules and gas. Writes
// ../out/gas.json and ../out/vector.json. Exits non-zero on any failure.
//
//   node ledger-bridge/contracts/test/anchor.test.mjs
//
// All "random" values are derived deterministically from labels, so the outputs are
// reproducible.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chainTools, compile } from '../build.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, '..', 'out');

const { anvil: ANVIL, nodeModules } = chainTools();
const require = createRequire(join(nodeModules, '..', 'package.json'));
const { bls12_381: bls } = require('@noble/curves/bls12-381');
const viem = require('viem');
const { privateKeyToAccount } = require('viem/accounts');

// ------------------------------------------------------------------ scheme constants

const NAMESPACE = new TextEncoder().encode('plexus-checkpoint-v1');
const DST = 'BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_';
const Fp = bls.fields.Fp;
const Fp2 = bls.fields.Fp2;
const Fr = bls.fields.Fr;
const G1 = bls.G1.ProjectivePoint;
const G2 = bls.G2.ProjectivePoint;
const P = Fp.ORDER;
const R = Fr.ORDER;

// ------------------------------------------------------------------ helpers

const hex = (b) => Buffer.from(b).toString('hex');
const h0x = (b) => '0x' + hex(b);
const unhex = (s) => Uint8Array.from(Buffer.from(s.replace(/^0x/, ''), 'hex'));
const concat = (...parts) => Uint8Array.from(Buffer.concat(parts.map((p) => Buffer.from(p))));
const sha256 = (b) => Uint8Array.from(createHash('sha256').update(b).digest());
const utf8 = (s) => new TextEncoder().encode(s);

/// Deterministic bytes / scalars from a label.
const detBytes = (label, n = 32) => {
    const out = [];
    for (let i = 0; out.length < n; i++) out.push(...sha256(utf8(`plexus-anchor-test/${label}/${i}`)));
    return Uint8Array.from(out.slice(0, n));
};
const detScalar = (label) => (BigInt(h0x(detBytes(label, 64))) % (R - 1n)) + 1n;
const detHash = (label) => h0x(detBytes(label));

const be64 = (n) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n));
    return b;
};
const fpBytes = (x) => unhex(x.toString(16).padStart(128, '0')); // 64-byte EIP-2537 Fp

/// EIP-2537 G1: x || y, 64 bytes each; infinity = 128 zero bytes.
function g1Eip(pt) {
    if (pt.equals(G1.ZERO)) return new Uint8Array(128);
    const a = pt.toAffine();
    return concat(fpBytes(a.x), fpBytes(a.y));
}
/// EIP-2537 G2: x.c0 || x.c1 || y.c0 || y.c1, 64 bytes each.
function g2Eip(pt) {
    if (pt.equals(G2.ZERO)) return new Uint8Array(256);
    const a = pt.toAffine();
    return concat(fpBytes(a.x.c0), fpBytes(a.x.c1), fpBytes(a.y.c0), fpBytes(a.y.c1));
}

/// M = varint(len N) || N || networkId || be64(epoch) || checkpointHash.
function signingMessage(networkId, epoch, checkpointHash) {
    return concat([NAMESPACE.length], NAMESPACE, unhex(networkId), be64(epoch), unhex(checkpointHash));
}
const hashToG1 = (m) => bls.G1.hashToCurve(m, { DST });

/// JS reference verification: e(sig, G2) == e(H(M), pk).
function jsVerify(sig, m, pk) {
    const lhs = bls.pairing(sig, G2.BASE);
    const rhs = bls.pairing(hashToG1(m), pk);
    return bls.fields.Fp12.eql(lhs, rhs);
}

// Shamir secret sharing over Fr and Lagrange interpolation at 0.
function shamir(secret, t, n, label) {
    const coeffs = [secret];
    for (let i = 1; i < t; i++) coeffs.push(detScalar(`${label}/coeff/${i}`));
    const shares = [];
    for (let x = 1n; x <= BigInt(n); x++) {
        let y = 0n;
        for (let i = coeffs.length - 1; i >= 0; i--) y = Fr.add(Fr.mul(y, x), coeffs[i]);
        shares.push({ index: x, value: y });
    }
    return shares;
}
function lagrangeAtZero(indices) {
    return indices.map((i) => {
        let num = 1n;
        let den = 1n;
        for (const j of indices) {
            if (j === i) continue;
            num = Fr.mul(num, j);
            den = Fr.mul(den, Fr.sub(j, i));
        }
        return Fr.div(num, den);
    });
}
/// Combines partial signatures [{index, sig}] into the group signature.
function combine(partials) {
    const lambdas = lagrangeAtZero(partials.map((p) => p.index));
    return partials.reduce((acc, p, k) => acc.add(p.sig.multiply(lambdas[k])), G1.ZERO);
}

/// An affine point on E(Fp): y^2 = x^3 + 4 that is NOT in the r-torsion subgroup G1.
function g1NonSubgroupPoint() {
    for (let x = 1n; ; x++) {
        const rhs = Fp.add(Fp.mul(Fp.sqr(x), x), 4n);
        let y;
        try {
            y = Fp.sqrt(rhs);
        } catch {
            continue;
        }
        if (Fp.eql(Fp.sqr(y), rhs)) {
            const pt = G1.fromAffine({ x, y });
            if (!pt.isTorsionFree()) return concat(fpBytes(x), fpBytes(y));
        }
    }
}
/// A point on E'(Fp2): y^2 = x^3 + 4(1+u) that is NOT in G2.
function g2NonSubgroupPoint() {
    const b = bls.G2.CURVE.b;
    for (let k = 1n; ; k++) {
        const x = Fp2.create({ c0: k, c1: 1n });
        const rhs = Fp2.add(Fp2.mul(Fp2.sqr(x), x), b);
        let y;
        try {
            y = Fp2.sqrt(rhs);
        } catch {
            continue;
        }
        if (!Fp2.eql(Fp2.sqr(y), rhs)) continue;
        const pt = G2.fromAffine({ x, y });
        if (!pt.isTorsionFree()) return g2Eip(pt);
    }
}

// ------------------------------------------------------------------ chain plumbing

async function freePort() {
    return new Promise((res, rej) => {
        const srv = createServer();
        srv.unref();
        srv.on('error', rej);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => res(port));
        });
    });
}

let anvilProc;
let anvilLog = '';
const killAnvil = () => {
    if (anvilProc && anvilProc.exitCode === null) anvilProc.kill('SIGTERM');
};
process.on('exit', killAnvil);
for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
        killAnvil();
        process.exit(1);
    });
}

// The anvil command line: anvil --host 127.0.0.1 --port <free port> --hardfork prague
const ANVIL_ARGS = (port) => ['--host', '127.0.0.1', '--port', String(port), '--hardfork', 'prague'];

async function startAnvil() {
    const port = await freePort();
    anvilProc = spawn(ANVIL, ANVIL_ARGS(port), { stdio: ['ignore', 'pipe', 'pipe'] });
    anvilProc.stdout.on('data', (d) => (anvilLog = (anvilLog + d).slice(-4000)));
    anvilProc.stderr.on('data', (d) => (anvilLog = (anvilLog + d).slice(-4000)));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 30_000;
    for (;;) {
        if (anvilProc.exitCode !== null) throw new Error(`anvil exited: ${anvilLog}`);
        try {
            const r = await fetch(url, {
                method: 'POST',
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
            });
            if (r.ok) return url;
        } catch {}
        if (Date.now() > deadline) throw new Error(`anvil did not start: ${anvilLog}`);
        await new Promise((r) => setTimeout(r, 100));
    }
}

let pub; // public client
let wallet; // deployer wallet client
let otherWallet; // second account's wallet client
let ART; // artifacts

async function clients(url) {
    const chain = viem.defineChain({
        id: 31337,
        name: 'anvil',
        nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
        rpcUrls: { default: { http: [url] } },
    });
    const transport = viem.http(url);
    pub = viem.createPublicClient({ chain, transport, pollingInterval: 50 });
    // anvil's pre-funded, unlocked accounts (anvil signs for them).
    const [a0, a1] = await pub.request({ method: 'eth_accounts' });
    wallet = viem.createWalletClient({ chain, transport, account: viem.getAddress(a0) });
    otherWallet = viem.createWalletClient({ chain, transport, account: viem.getAddress(a1) });
}

async function deploy(name, args) {
    const { abi, bytecode } = ART[name];
    const hash = await wallet.deployContract({ abi, bytecode, args });
    const rcpt = await pub.waitForTransactionReceipt({ hash });
    assert.equal(rcpt.status, 'success', `deploy ${name}`);
    return { address: rcpt.contractAddress, abi, deployGas: Number(rcpt.gasUsed) };
}

const read = (c, functionName, args = []) => pub.readContract({ address: c.address, abi: c.abi, functionName, args });

async function send(c, functionName, args, { from = wallet, gas } = {}) {
    const hash = await from.writeContract({ address: c.address, abi: c.abi, functionName, args, gas });
    return pub.waitForTransactionReceipt({ hash });
}

/// Finds the raw revert data in a viem error chain.
function revertData(err) {
    for (let e = err; e; e = e.cause) {
        if (typeof e.data === 'string' && e.data.startsWith('0x')) return e.data;
        if (e.data && typeof e.data.data === 'string') return e.data.data;
        if (typeof e.raw === 'string' && e.raw.startsWith('0x')) return e.raw;
    }
    return undefined;
}
function decodeRevert(abi, err) {
    const data = revertData(err);
    if (!data || data === '0x') throw new Error(`no revert data in: ${err.shortMessage || err.message}`);
    return viem.decodeErrorResult({ abi, data });
}

/// Asserts that calling functionName reverts with errorName (checked with eth_call), and
/// that the same call mined as a transaction reverts and changes nothing.
async function expectRevert(c, functionName, args, errorName, errorArgs) {
    const data = viem.encodeFunctionData({ abi: c.abi, functionName, args });
    let err;
    try {
        await pub.call({ account: wallet.account.address, to: c.address, data });
    } catch (e) {
        err = e;
    }
    assert.ok(err, `${functionName} should revert with ${errorName}`);
    const dec = decodeRevert(c.abi, err);
    assert.equal(dec.errorName, errorName);
    if (errorArgs) assert.deepEqual(dec.args, errorArgs);

    const before = await read(c, 'latestEpoch');
    const rcpt = await send(c, functionName, args, { gas: 1_000_000n });
    assert.equal(rcpt.status, 'reverted', `${functionName} tx should revert`);
    assert.equal(rcpt.logs.length, 0);
    assert.equal(await read(c, 'latestEpoch'), before);
}

async function expectDeployRevert(name, args, errorName) {
    const { abi, bytecode } = ART[name];
    const data = viem.encodeDeployData({ abi, bytecode, args });
    let err;
    try {
        await pub.call({ account: wallet.account.address, data });
    } catch (e) {
        err = e;
    }
    assert.ok(err, `deploy should revert with ${errorName}`);
    assert.equal(decodeRevert(abi, err).errorName, errorName);
}

function anchoredEvents(c, rcpt) {
    return viem.parseEventLogs({ abi: c.abi, logs: rcpt.logs, eventName: 'Anchored' });
}

// ------------------------------------------------------------------ fixtures

const NETWORK_ID = detHash('network-id');
const T = 3;
const N = 4;
const groupSecret = detScalar('group-secret');
const groupKey = G2.BASE.multiply(groupSecret);
const shares = shamir(groupSecret, T, N, 'group');

/// Signs (epoch, hash) with the given share indices (1-based) and combines.
function thresholdSign(epoch, checkpointHash, indices, networkId = NETWORK_ID) {
    const hm = hashToG1(signingMessage(networkId, epoch, checkpointHash));
    const partials = indices.map((i) => ({ index: BigInt(i), sig: hm.multiply(shares[i - 1].value) }));
    return combine(partials);
}
const sigHex = (pt) => h0x(g1Eip(pt));

const gas = {};

// ------------------------------------------------------------------ tests

before(async () => {
    // The committed artifacts must match the sources.
    const fresh = compile(nodeModules);
    ART = {};
    for (const name of ['CheckpointAnchor', 'EcdsaAnchor']) {
        ART[name] = JSON.parse(readFileSync(join(outDir, `${name}.json`), 'utf8'));
        const stale = `out/${name}.json is stale: run node ledger-bridge/contracts/build.mjs`;
        assert.ok(ART[name].bytecode === fresh[name].bytecode, stale);
        assert.ok(JSON.stringify(ART[name].abi) === JSON.stringify(fresh[name].abi), stale);
        assert.equal(ART[name].evmVersion, 'prague');
        assert.equal(ART[name].solc, '0.8.30');
    }
    await clients(await startAnvil());
});

after(() => {
    killAnvil();
});

describe('JS reference', () => {
    it('threshold signature combines and verifies', () => {
        const epoch = 1n;
        const h = detHash('cp/1');
        const m = signingMessage(NETWORK_ID, epoch, h);
        assert.equal(m.length, 93);
        assert.equal(m[0], 0x14);
        const s123 = thresholdSign(epoch, h, [1, 2, 3]);
        const s234 = thresholdSign(epoch, h, [2, 3, 4]);
        const s124 = thresholdSign(epoch, h, [1, 2, 4]);
        assert.ok(s123.equals(s234) && s123.equals(s124), 'any t shares give the same signature');
        assert.ok(s123.equals(hashToG1(m).multiply(groupSecret)));
        assert.ok(jsVerify(s123, m, groupKey));
        // noble's own min-sig verifier, with the POP DST, agrees.
        assert.ok(bls.verifyShortSignature(s123, m, groupKey, { DST }));
        assert.ok(!jsVerify(thresholdSign(epoch, h, [1, 2]), m, groupKey), 't-1 shares must not verify');
    });
});

describe('CheckpointAnchor', () => {
    let c;

    it('rejects bad group keys at deployment', async () => {
        await expectDeployRevert('CheckpointAnchor', [NETWORK_ID, h0x(new Uint8Array(255))], 'BadGroupKeyLength');
        await expectDeployRevert('CheckpointAnchor', [NETWORK_ID, h0x(g2Eip(groupKey).slice(0, 96))], 'BadGroupKeyLength');
        await expectDeployRevert('CheckpointAnchor', [NETWORK_ID, h0x(new Uint8Array(256))], 'InvalidGroupKey');
        await expectDeployRevert('CheckpointAnchor', [NETWORK_ID, h0x(g2NonSubgroupPoint())], 'InvalidGroupKey');
        const offCurve = g2Eip(groupKey);
        offCurve[255] ^= 1;
        await expectDeployRevert('CheckpointAnchor', [NETWORK_ID, h0x(offCurve)], 'InvalidGroupKey');
        const badEncoding = g2Eip(groupKey);
        badEncoding[0] = 1; // top 16 bytes of a field element must be zero
        await expectDeployRevert('CheckpointAnchor', [NETWORK_ID, h0x(badEncoding)], 'InvalidGroupKey');
    });

    it('deploys with the group key', async () => {
        c = await deploy('CheckpointAnchor', [NETWORK_ID, h0x(g2Eip(groupKey))]);
        gas.checkpointAnchorDeploy = c.deployGas;
        assert.equal(await read(c, 'networkId'), NETWORK_ID);
        assert.equal(await read(c, 'groupKey'), h0x(g2Eip(groupKey)));
        assert.equal(await read(c, 'latestEpoch'), 0n);
    });

    it('on-chain hashToG1 matches the RFC 9380 reference', async () => {
        const msgs = [
            new Uint8Array(0),
            utf8('abc'),
            signingMessage(NETWORK_ID, 1n, detHash('cp/1')),
            signingMessage(NETWORK_ID, 2n ** 64n - 1n, detHash('cp/max')),
            detBytes('msg/55', 55),
            detBytes('msg/56', 56),
            detBytes('msg/64', 64),
            detBytes('msg/200', 200),
            detBytes('msg/1000', 1000),
        ];
        for (const m of msgs) {
            const onChain = await read(c, 'hashToG1', [h0x(m)]);
            assert.equal(onChain, h0x(g1Eip(hashToG1(m))), `hashToG1 of ${m.length} bytes`);
        }
    });

    it('signingMessage matches', async () => {
        for (const epoch of [0n, 1n, 7n, 2n ** 64n - 1n]) {
            const h = detHash(`cp/${epoch}`);
            assert.equal(await read(c, 'signingMessage', [epoch, h]), h0x(signingMessage(NETWORK_ID, epoch, h)));
        }
    });

    it('verify() accepts the group signature and rejects others', async () => {
        const h = detHash('cp/5');
        const sig = thresholdSign(5n, h, [1, 3, 4]);
        assert.equal(await read(c, 'verify', [5n, h, sigHex(sig)]), true);
        // gasUsed of verify() as a transaction (eth_createAccessList reports it).
        const al = await pub.request({
            method: 'eth_createAccessList',
            params: [
                {
                    from: wallet.account.address,
                    to: c.address,
                    gas: viem.toHex(1_000_000),
                    data: viem.encodeFunctionData({ abi: c.abi, functionName: 'verify', args: [5n, h, sigHex(sig)] }),
                },
                'latest',
            ],
        });
        gas.checkpointVerifyCall = Number(al.gasUsed);
        assert.equal(await read(c, 'verify', [6n, h, sigHex(sig)]), false);
        assert.equal(await read(c, 'verify', [5n, detHash('other'), sigHex(sig)]), false);
        assert.equal(await read(c, 'verify', [5n, h, sigHex(thresholdSign(5n, h, [1, 3]))]), false);
        assert.equal(await read(c, 'verify', [5n, h, h0x(g1NonSubgroupPoint())]), false);
        assert.equal(await read(c, 'verify', [5n, h, '0x' + '00'.repeat(127)]), false);
        assert.equal(await read(c, 'verify', [5n, h, h0x(new Uint8Array(128))]), false);
    });

    it('anchors a valid checkpoint and emits Anchored', async () => {
        const epoch = 1n;
        const h = detHash('cp/1');
        const rcpt = await send(c, 'anchor', [epoch, h, sigHex(thresholdSign(epoch, h, [1, 2, 3]))]);
        assert.equal(rcpt.status, 'success');
        gas.checkpointAnchorFirst = Number(rcpt.gasUsed);
        const ev = anchoredEvents(c, rcpt);
        assert.equal(ev.length, 1);
        assert.deepEqual(ev[0].args, { epoch, checkpointHash: h, submitter: wallet.account.address });
        assert.equal(await read(c, 'checkpointOf', [epoch]), h);
        assert.equal(await read(c, 'anchoredAt', [epoch]), rcpt.blockNumber);
        assert.equal(await read(c, 'latestEpoch'), epoch);
    });

    it('resubmitting the same anchor is a no-op success', async () => {
        const epoch = 1n;
        const h = detHash('cp/1');
        const at = await read(c, 'anchoredAt', [epoch]);
        const rcpt = await send(c, 'anchor', [epoch, h, sigHex(thresholdSign(epoch, h, [2, 3, 4]))]);
        assert.equal(rcpt.status, 'success');
        assert.equal(rcpt.logs.length, 0);
        gas.checkpointAnchorResubmitNoop = Number(rcpt.gasUsed);
        assert.equal(await read(c, 'anchoredAt', [epoch]), at);
        assert.equal(await read(c, 'checkpointOf', [epoch]), h);
    });

    it('a different hash for an anchored epoch reverts ConflictingAnchor', async () => {
        const h2 = detHash('cp/1-conflict');
        await expectRevert(c, 'anchor', [1n, h2, sigHex(thresholdSign(1n, h2, [1, 2, 3]))], 'ConflictingAnchor', [
            1n,
            detHash('cp/1'),
        ]);
    });

    it('a valid signature with too little gas never reads as InvalidSignature', async () => {
        const epoch = 3n;
        const h = detHash('cp/3');
        const data = viem.encodeFunctionData({
            abi: c.abi,
            functionName: 'anchor',
            args: [epoch, h, sigHex(thresholdSign(epoch, h, [1, 2, 3]))],
        });
        const seen = new Set();
        for (let g = 40_000n; g <= 400_000n; g += 15_000n) {
            try {
                await pub.call({ account: wallet.account.address, to: c.address, data, gas: g });
                seen.add('success');
            } catch (e) {
                const d = revertData(e);
                const name = d && d !== '0x' ? viem.decodeErrorResult({ abi: c.abi, data: d }).errorName : 'out of gas';
                assert.notEqual(name, 'InvalidSignature', `gas ${g}`);
                seen.add(name);
            }
        }
        assert.ok(seen.has('InsufficientGas') && seen.has('success'), [...seen].join(','));
        // The estimate of the client's node is enough.
        const est = await pub.estimateGas({ account: wallet.account.address, to: c.address, data });
        await pub.call({ account: wallet.account.address, to: c.address, data, gas: est });
        gas.checkpointAnchorNextEstimate = Number(est);
    });

    it('rejects forged and wrong signatures', async () => {
        const epoch = 2n;
        const h = detHash('cp/2');
        const good = thresholdSign(epoch, h, [1, 2, 4]);
        // A random G1 point.
        const randomPoint = G1.BASE.multiply(detScalar('random-point'));
        await expectRevert(c, 'anchor', [epoch, h, sigHex(randomPoint)], 'InvalidSignature');
        // A correct-form signature by a random key.
        const randomKeySig = hashToG1(signingMessage(NETWORK_ID, epoch, h)).multiply(detScalar('random-key'));
        await expectRevert(c, 'anchor', [epoch, h, sigHex(randomKeySig)], 'InvalidSignature');
        // Combined from t-1 shares.
        await expectRevert(c, 'anchor', [epoch, h, sigHex(thresholdSign(epoch, h, [1, 2]))], 'InvalidSignature');
        await expectRevert(c, 'anchor', [epoch, h, sigHex(thresholdSign(epoch, h, [3, 4]))], 'InvalidSignature');
        // A single share's partial signature.
        const partial = hashToG1(signingMessage(NETWORK_ID, epoch, h)).multiply(shares[0].value);
        await expectRevert(c, 'anchor', [epoch, h, sigHex(partial)], 'InvalidSignature');
        // The right signature with the wrong epoch / hash / network.
        await expectRevert(c, 'anchor', [epoch + 1n, h, sigHex(good)], 'InvalidSignature');
        await expectRevert(c, 'anchor', [epoch, detHash('cp/2-other'), sigHex(good)], 'InvalidSignature');
        const otherNet = thresholdSign(epoch, h, [1, 2, 3], detHash('other-network'));
        await expectRevert(c, 'anchor', [epoch, h, sigHex(otherNet)], 'InvalidSignature');
        // Malformed points: infinity, off-curve, not in G1, non-canonical encoding.
        await expectRevert(c, 'anchor', [epoch, h, h0x(new Uint8Array(128))], 'InvalidSignature');
        const offCurve = g1Eip(good);
        offCurve[127] ^= 1;
        await expectRevert(c, 'anchor', [epoch, h, h0x(offCurve)], 'InvalidSignature');
        await expectRevert(c, 'anchor', [epoch, h, h0x(g1NonSubgroupPoint())], 'InvalidSignature');
        const nonCanonical = g1Eip(good);
        nonCanonical[0] = 1;
        await expectRevert(c, 'anchor', [epoch, h, h0x(nonCanonical)], 'InvalidSignature');
        // Malformed lengths (including the 48-byte compressed form).
        for (const len of [0, 48, 96, 127, 129, 256]) {
            await expectRevert(c, 'anchor', [epoch, h, h0x(new Uint8Array(len))], 'BadSignatureLength');
        }
        await expectRevert(c, 'anchor', [epoch, h, h0x(good.toRawBytes(true))], 'BadSignatureLength');
        // The zero hash is reserved.
        const z = '0x' + '00'.repeat(32);
        await expectRevert(c, 'anchor', [epoch, z, sigHex(thresholdSign(epoch, z, [1, 2, 3]))], 'ZeroCheckpointHash');
        // Nothing was anchored.
        assert.equal(await read(c, 'checkpointOf', [epoch]), z);
        assert.equal(await read(c, 'anchoredAt', [epoch]), 0n);
        // And the good one still goes through.
        const rcpt = await send(c, 'anchor', [epoch, h, sigHex(good)]);
        assert.equal(rcpt.status, 'success');
        gas.checkpointAnchorNext = Number(rcpt.gasUsed);
        assert.equal(await read(c, 'latestEpoch'), 2n);
    });

    it('accepts gaps, out-of-order epochs, and any submitter', async () => {
        const anchorBy = async (epoch, from) => {
            const h = detHash(`cp/${epoch}`);
            const rcpt = await send(c, 'anchor', [epoch, h, sigHex(thresholdSign(epoch, h, [2, 4, 1]))], { from });
            assert.equal(rcpt.status, 'success');
            const ev = anchoredEvents(c, rcpt);
            assert.equal(ev.length, 1);
            assert.equal(ev[0].args.submitter, from.account.address);
            assert.equal(await read(c, 'checkpointOf', [epoch]), h);
        };
        await anchorBy(10n, otherWallet); // gap 3..9 (failed epochs never anchored)
        assert.equal(await read(c, 'latestEpoch'), 10n);
        await anchorBy(5n, wallet); // older epoch, arriving late
        assert.equal(await read(c, 'latestEpoch'), 10n);
        await anchorBy(0n, otherWallet);
        await anchorBy(2n ** 64n - 1n, wallet);
        assert.equal(await read(c, 'latestEpoch'), 2n ** 64n - 1n);
        for (const e of [3n, 4n, 9n, 11n]) {
            assert.equal(await read(c, 'anchoredAt', [e]), 0n);
        }
    });
});

describe('EcdsaAnchor (baseline)', () => {
    const oracleKeys = Array.from({ length: 15 }, (_, i) => h0x(detBytes(`oracle/${i}`)));
    const oracles = oracleKeys.map((k) => privateKeyToAccount(k));

    /// m signatures, sorted by signer address.
    async function oracleSigs(accounts, epoch, h) {
        const msg = concat(unhex(NETWORK_ID), be64(epoch), unhex(h));
        const sorted = [...accounts].sort((a, b) => (BigInt(a.address) < BigInt(b.address) ? -1 : 1));
        return Promise.all(sorted.map((a) => a.signMessage({ message: { raw: msg } })));
    }

    it('m = 1', async () => {
        const c = await deploy('EcdsaAnchor', [NETWORK_ID, [oracles[0].address], 1n]);
        gas.ecdsaAnchorM1Deploy = c.deployGas;
        const h = detHash('cp/1');
        const r1 = await send(c, 'anchor', [1n, h, await oracleSigs([oracles[0]], 1n, h)]);
        assert.equal(r1.status, 'success');
        assert.equal(anchoredEvents(c, r1).length, 1);
        gas.ecdsaAnchorM1First = Number(r1.gasUsed);
        const r2 = await send(c, 'anchor', [1n, h, []]);
        assert.equal(r2.status, 'success');
        assert.equal(r2.logs.length, 0);
        gas.ecdsaAnchorM1ResubmitNoop = Number(r2.gasUsed);
        const h2 = detHash('cp/2');
        const r3 = await send(c, 'anchor', [2n, h2, await oracleSigs([oracles[0]], 2n, h2)]);
        assert.equal(r3.status, 'success');
        gas.ecdsaAnchorM1Next = Number(r3.gasUsed);
        assert.equal(await read(c, 'latestEpoch'), 2n);
        await expectRevert(c, 'anchor', [1n, h2, await oracleSigs([oracles[0]], 1n, h2)], 'ConflictingAnchor', [1n, h]);
    });

    it('m = 15', async () => {
        const c = await deploy('EcdsaAnchor', [NETWORK_ID, oracles.map((a) => a.address), 15n]);
        gas.ecdsaAnchorM15Deploy = c.deployGas;
        const h = detHash('cp/1');
        const sigs = await oracleSigs(oracles, 1n, h);
        // Negative cases first.
        await expectRevert(c, 'anchor', [1n, h, sigs.slice(0, 14)], 'TooFewSignatures', [14n, 15n]);
        await expectRevert(c, 'anchor', [1n, h, [...sigs.slice(0, 14), sigs[13]]], 'SignersNotIncreasing');
        await expectRevert(c, 'anchor', [1n, h, [...sigs].reverse()], 'SignersNotIncreasing');
        const stranger = privateKeyToAccount(h0x(detBytes('stranger')));
        const withStranger = await oracleSigs([...oracles.slice(0, 14), stranger], 1n, h);
        await expectRevert(c, 'anchor', [1n, h, withStranger], 'NotOracle');
        const r1 = await send(c, 'anchor', [1n, h, sigs]);
        assert.equal(r1.status, 'success');
        gas.ecdsaAnchorM15First = Number(r1.gasUsed);
        const h2 = detHash('cp/2');
        const r2 = await send(c, 'anchor', [2n, h2, await oracleSigs(oracles, 2n, h2)]);
        assert.equal(r2.status, 'success');
        gas.ecdsaAnchorM15Next = Number(r2.gasUsed);
    });
});

describe('fixed test vector', () => {
    it('writes out/vector.json and verifies it on chain', async () => {
        // Fixed group secret: 32 bytes of 0x2a (< r).
        const secret = BigInt('0x' + '2a'.repeat(32));
        assert.ok(secret < R);
        const networkId = h0x(sha256(utf8('plexus-vector-network')));
        const epoch = 7n;
        const checkpointHash = h0x(sha256(utf8('plexus-vector-checkpoint-7')));
        const msg = concat(unhex(networkId), be64(epoch), unhex(checkpointHash));
        const m = signingMessage(networkId, epoch, checkpointHash);
        const hm = hashToG1(m);
        const pk = G2.BASE.multiply(secret);
        const sig = hm.multiply(secret);
        assert.ok(jsVerify(sig, m, pk));
        // Round-trip the compressed forms.
        assert.ok(G1.fromHex(sig.toRawBytes(true)).equals(sig));
        assert.ok(G2.fromHex(pk.toRawBytes(true)).equals(pk));

        const c = await deploy('CheckpointAnchor', [networkId, h0x(g2Eip(pk))]);
        assert.equal(await read(c, 'hashToG1', [h0x(m)]), h0x(g1Eip(hm)));
        assert.equal(await read(c, 'verify', [epoch, checkpointHash, h0x(g1Eip(sig))]), true);
        const rcpt = await send(c, 'anchor', [epoch, checkpointHash, h0x(g1Eip(sig))]);
        assert.equal(rcpt.status, 'success');

        const vector = {
            description:
                'Plexus checkpoint anchor test vector: MinSig BLS12-381 (sig in G1, key in G2). ' +
                'msg = networkId || be64(epoch) || checkpointHash; M = 0x14 || namespace || msg; ' +
                'H(M) = hash_to_curve G1 (RFC 9380 BLS12381G1_XMD:SHA-256_SSWU_RO_) with dst; ' +
                'sig = secret * H(M); groupKey = secret * G2. EIP-2537 encodings: G1 = x||y, ' +
                'G2 = x.c0||x.c1||y.c0||y.c1, each Fp 64 bytes big-endian. Compressed = ZCash form ' +
                '(G2 compressed puts x.c1 before x.c0).',
            namespace: h0x(NAMESPACE),
            namespaceAscii: 'plexus-checkpoint-v1',
            dst: DST,
            groupSecret: '0x' + secret.toString(16).padStart(64, '0'),
            networkId,
            epoch: Number(epoch),
            checkpointHash,
            msg: h0x(msg),
            M: h0x(m),
            hashToG1Eip2537: h0x(g1Eip(hm)),
            groupKeyEip2537: h0x(g2Eip(pk)),
            groupKeyCompressed: h0x(pk.toRawBytes(true)),
            signatureEip2537: h0x(g1Eip(sig)),
            signatureCompressed: h0x(sig.toRawBytes(true)),
        };
        writeFileSync(join(outDir, 'vector.json'), JSON.stringify(vector, null, 2) + '\n');
    });
});

describe('gas report', () => {
    it('writes out/gas.json', () => {
        for (const k of [
            'checkpointAnchorFirst',
            'checkpointAnchorNext',
            'checkpointAnchorResubmitNoop',
            'ecdsaAnchorM1First',
            'ecdsaAnchorM15First',
        ]) {
            assert.ok(gas[k] > 0, `missing gas measurement ${k}`);
        }
        const report = {
            note:
                'gasUsed of transactions on anvil 1.7.1 --hardfork prague (includes 21000 intrinsic gas and calldata). ' +
                'First = first anchor into a fresh contract (latestEpoch 0 -> nonzero); Next = a later new epoch; ' +
                'ResubmitNoop = same epoch and hash again; checkpointVerifyCall = gasUsed of the verify() view sent as a transaction; checkpointAnchorNextEstimate = eth_estimateGas of an anchor of a new epoch (the gas limit it needs).',
            ...gas,
        };
        writeFileSync(join(outDir, 'gas.json'), JSON.stringify(report, null, 2) + '\n');
        console.log('gas:', JSON.stringify(gas, null, 2));
    });
});
