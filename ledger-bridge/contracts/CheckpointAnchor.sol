// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title CheckpointAnchor
/// @notice Anchors Plexus epoch checkpoints that are signed by the network's threshold
///         BLS group key, and verifies the BLS signature on chain with the EIP-2537
///         BLS12-381 precompiles (Prague).
///
/// Signature scheme (commonware-cryptography "MinSig" BLS12-381):
///   - signatures are G1 points, the group public key is a G2 point;
///   - msg = networkId (32) || epoch as uint64 big-endian (8) || checkpointHash (32);
///   - M   = 0x14 || "plexus-checkpoint-v1" || msg      (93 bytes; 0x14 = varint length
///           of the 20-byte namespace);
///   - H(M) = hash_to_curve G1, RFC 9380 suite BLS12381G1_XMD:SHA-256_SSWU_RO_, with
///           DST "BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_";
///   - valid iff e(sig, G2) == e(H(M), groupKey), checked as
///           PAIRING_CHECK((sig, -G2), (H(M), groupKey)).
///
/// Who may submit: anyone. The threshold signature is the sole authority: only a quorum of
/// at least t share holders can produce it, and it binds networkId, epoch and checkpoint
/// hash, so a submitter can neither forge nor alter an anchor. Not restricting msg.sender
/// means no extra key has to be managed or can be lost or stolen, any node or relayer can
/// pay the gas (liveness), and front-running is harmless because the stored result is the
/// same whoever submits it (resubmission is an idempotent no-op).
///
/// Encodings (EIP-2537): an Fp element is 64 bytes big-endian with the top 16 bytes zero;
/// G1 = x || y (128 bytes); G2 = x.c0 || x.c1 || y.c0 || y.c1 (256 bytes), where an Fp2
/// element is c0 + c1*u. (Note: the ZCash compressed form orders c1 before c0.)
contract CheckpointAnchor {
    // ---------------------------------------------------------------- errors / events

    /// The group key passed to the constructor is not 256 bytes.
    error BadGroupKeyLength();
    /// The group key is the point at infinity, not on the curve, not in G2, or badly encoded.
    error InvalidGroupKey();
    /// The signature is not 128 bytes (EIP-2537 G1 encoding).
    error BadSignatureLength();
    /// The signature does not verify under the group key (includes malformed points).
    error InvalidSignature();
    /// `epoch` is already anchored with a different hash (`existing`).
    error ConflictingAnchor(uint64 epoch, bytes32 existing);
    /// The zero hash is reserved to mean "not anchored".
    error ZeroCheckpointHash();
    /// An EIP-2537 / MODEXP precompile call failed or is unavailable (chain not on Prague).
    error PrecompileFailed();
    /// Too little gas left to give a precompile call its full gas cap; raise the gas limit.
    error InsufficientGas();

    event Anchored(uint64 indexed epoch, bytes32 checkpointHash, address submitter);

    // ---------------------------------------------------------------- constants

    /// Signing namespace (commonware `union_unique` prefix).
    bytes public constant NAMESPACE = "plexus-checkpoint-v1";
    /// RFC 9380 domain separation tag of the MinSig POP scheme (43 bytes).
    bytes public constant DST = "BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_";

    // Precompile addresses (plain numbers so inline assembly can use them).
    uint256 private constant MODEXP = 0x05;
    uint256 private constant BLS12_G1ADD = 0x0b;
    uint256 private constant BLS12_G2MSM = 0x0e;
    uint256 private constant BLS12_PAIRING_CHECK = 0x0f;
    uint256 private constant BLS12_MAP_FP_TO_G1 = 0x10;

    // Gas caps for the precompile calls. A failing EIP-2537 call consumes all gas passed
    // to it, so never forward everything; each cap is comfortably above the Prague price
    // (MODEXP 200 (500 from Osaka), MAP_FP_TO_G1 5500, G1ADD 375, G2MSM(k=1) 22500,
    // PAIRING_CHECK(k=2) 102900).
    uint256 private constant GAS_MODEXP = 5_000;
    uint256 private constant GAS_MAP = 15_000;
    uint256 private constant GAS_G1ADD = 2_000;
    uint256 private constant GAS_G2MSM = 50_000;
    uint256 private constant GAS_PAIRING = 150_000;
    // Gas that must be left before a group of precompile calls, so that each call really
    // gets its cap (EIP-150 forwards at most 63/64 of what is left). Without this, a valid
    // signature sent with too low a gas limit would fail inside the precompile and be
    // reported as InvalidSignature; with it, the transaction reverts InsufficientGas.
    // Literals (solc does not fold these expressions): each is >= (sum of caps) * 64/63 plus
    // a margin for the opcodes between the calls.
    uint256 private constant NEED_HASH = 45_000; // (2*5000 + 2*15000 + 2000) * 64/63 = 42667
    uint256 private constant NEED_PAIRING = 154_000; // 150000 * 64/63 = 152381
    uint256 private constant NEED_G2MSM = 52_000; // 50000 * 64/63 = 50794

    // Base field modulus p, as a 64-byte EIP-2537 field element (two words).
    uint256 private constant P_HI = 0x000000000000000000000000000000001a0111ea397fe69a4b1ba7b6434bacd7;
    uint256 private constant P_LO = 0x64774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab;

    // -G2 generator in EIP-2537 encoding (x.c0, x.c1, y.c0, y.c1; each hi word, lo word).
    uint256 private constant NG2_X0_HI = 0x00000000000000000000000000000000024aa2b2f08f0a91260805272dc51051;
    uint256 private constant NG2_X0_LO = 0xc6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8;
    uint256 private constant NG2_X1_HI = 0x0000000000000000000000000000000013e02b6052719f607dacd3a088274f65;
    uint256 private constant NG2_X1_LO = 0x596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e;
    uint256 private constant NG2_Y0_HI = 0x000000000000000000000000000000000d1b3cc2c7027888be51d9ef691d77bc;
    uint256 private constant NG2_Y0_LO = 0xb679afda66c73f17f9ee3837a55024f78c71363275a75d75d86bab79f74782aa;
    uint256 private constant NG2_Y1_HI = 0x0000000000000000000000000000000013fa4d4a0ad8b1ce186ed5061789213d;
    uint256 private constant NG2_Y1_LO = 0x993923066dddaf1040bc3ff59f825c78df74f2d75467e25e0f55f8a00fa030ed;

    // ---------------------------------------------------------------- state

    /// Identifier of the Plexus network whose checkpoints this contract anchors.
    bytes32 public immutable networkId;

    // The 256-byte group key, kept in code (immutables) so verification reads no storage.
    bytes32 private immutable _gk0;
    bytes32 private immutable _gk1;
    bytes32 private immutable _gk2;
    bytes32 private immutable _gk3;
    bytes32 private immutable _gk4;
    bytes32 private immutable _gk5;
    bytes32 private immutable _gk6;
    bytes32 private immutable _gk7;

    /// Anchored checkpoint hash per epoch; zero means "not anchored".
    mapping(uint64 => bytes32) public checkpointOf;
    /// Block number at which each epoch was anchored; zero means "not anchored".
    mapping(uint64 => uint64) public anchoredAt;
    /// Highest epoch anchored so far (0 also before any anchor: use anchoredAt(0) to tell).
    uint64 public latestEpoch;

    // ---------------------------------------------------------------- constructor

    /// @param networkId_ the network identifier signed into every checkpoint message.
    /// @param groupKey_  the threshold group public key, G2 in EIP-2537 encoding (256 bytes).
    constructor(bytes32 networkId_, bytes memory groupKey_) {
        if (groupKey_.length != 256) revert BadGroupKeyLength();
        bytes32[8] memory w;
        bool nonZero;
        for (uint256 i = 0; i < 8; i++) {
            bytes32 word;
            assembly ("memory-safe") {
                word := mload(add(add(groupKey_, 0x20), mul(i, 0x20)))
            }
            w[i] = word;
            if (word != 0) nonZero = true;
        }
        if (!nonZero) revert InvalidGroupKey();

        // Subgroup / on-curve / encoding check: G2MSM performs the G2 subgroup check on its
        // inputs. Multiply the key by 1 and require success with a 256-byte result.
        if (gasleft() < NEED_G2MSM) revert InsufficientGas();
        bool ok;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mcopy(ptr, add(groupKey_, 0x20), 256)
            mstore(add(ptr, 256), 1)
            ok := staticcall(GAS_G2MSM, BLS12_G2MSM, ptr, 288, ptr, 256)
            if iszero(eq(returndatasize(), 256)) { ok := 0 }
        }
        if (!ok) revert InvalidGroupKey();

        networkId = networkId_;
        _gk0 = w[0];
        _gk1 = w[1];
        _gk2 = w[2];
        _gk3 = w[3];
        _gk4 = w[4];
        _gk5 = w[5];
        _gk6 = w[6];
        _gk7 = w[7];
    }

    // ---------------------------------------------------------------- anchoring

    /// @notice Anchors `checkpointHash` for `epoch`, authorised by the group's threshold
    ///         BLS signature over the checkpoint message (see the contract docs).
    /// @dev Idempotent: if `epoch` is already anchored with the same hash this returns
    ///      without verifying, changing state or emitting (a restarted client can resubmit
    ///      safely and cheaply). A different hash for an anchored epoch reverts with
    ///      ConflictingAnchor. Epochs may arrive with gaps and in any order.
    /// @param signature the group signature, G1 in EIP-2537 encoding (128 bytes).
    function anchor(uint64 epoch, bytes32 checkpointHash, bytes calldata signature) external {
        if (signature.length != 128) revert BadSignatureLength();
        if (checkpointHash == bytes32(0)) revert ZeroCheckpointHash();
        bytes32 existing = checkpointOf[epoch];
        if (existing != bytes32(0)) {
            if (existing == checkpointHash) return;
            revert ConflictingAnchor(epoch, existing);
        }
        (bool ok, bool valid) = _verify(epoch, checkpointHash, signature);
        if (!ok) revert PrecompileFailed();
        if (!valid) revert InvalidSignature();

        checkpointOf[epoch] = checkpointHash;
        anchoredAt[epoch] = uint64(block.number);
        if (epoch > latestEpoch) latestEpoch = epoch;
        emit Anchored(epoch, checkpointHash, msg.sender);
    }

    // ---------------------------------------------------------------- views

    /// @notice Whether `signature` is a valid group signature of (epoch, checkpointHash).
    ///         Returns false on malformed input; reverts only with InsufficientGas (or
    ///         PrecompileFailed on a chain without EIP-2537).
    function verify(uint64 epoch, bytes32 checkpointHash, bytes calldata signature)
        external
        view
        returns (bool)
    {
        if (signature.length != 128) return false;
        (bool ok, bool valid) = _verify(epoch, checkpointHash, signature);
        if (!ok) revert PrecompileFailed();
        return valid;
    }

    /// @notice The group public key, G2 in EIP-2537 encoding (256 bytes).
    function groupKey() external view returns (bytes memory key) {
        key = new bytes(256);
        uint256 ptr;
        assembly ("memory-safe") {
            ptr := add(key, 0x20)
        }
        _writeGroupKey(ptr);
    }

    /// @notice The exact bytes M that are hashed to G1 and signed for (epoch, checkpointHash):
    ///         0x14 || "plexus-checkpoint-v1" || networkId || be64(epoch) || checkpointHash.
    function signingMessage(uint64 epoch, bytes32 checkpointHash) public view returns (bytes memory) {
        return abi.encodePacked(uint8(NAMESPACE.length), NAMESPACE, networkId, epoch, checkpointHash);
    }

    /// @notice hash_to_curve(message) to G1 (RFC 9380 BLS12381G1_XMD:SHA-256_SSWU_RO_ with the
    ///         POP DST above), as a 128-byte EIP-2537 G1 point. Exposed for testing.
    function hashToG1(bytes memory message) external view returns (bytes memory point) {
        point = new bytes(128);
        uint256 out;
        assembly ("memory-safe") {
            out := add(point, 0x20)
        }
        if (!_hashToG1(message, out)) revert PrecompileFailed();
    }

    // ---------------------------------------------------------------- internals

    /// Returns (ok, valid): ok is false if a hashing precompile failed (chain without
    /// EIP-2537); valid is the pairing result (false also for malformed signatures).
    function _verify(uint64 epoch, bytes32 checkpointHash, bytes calldata signature)
        private
        view
        returns (bool ok, bool valid)
    {
        // Pairing input: sig (128) || -G2 (256) || H(M) (128) || groupKey (256) = 768 bytes.
        uint256 ptr;
        assembly ("memory-safe") {
            ptr := mload(0x40)
            mstore(0x40, add(ptr, 768))
        }
        if (!_hashToG1(signingMessage(epoch, checkpointHash), ptr + 384)) return (false, false);
        _writeGroupKey(ptr + 512);
        if (gasleft() < NEED_PAIRING) revert InsufficientGas();
        assembly ("memory-safe") {
            calldatacopy(ptr, signature.offset, 128)
            mstore(add(ptr, 128), NG2_X0_HI)
            mstore(add(ptr, 160), NG2_X0_LO)
            mstore(add(ptr, 192), NG2_X1_HI)
            mstore(add(ptr, 224), NG2_X1_LO)
            mstore(add(ptr, 256), NG2_Y0_HI)
            mstore(add(ptr, 288), NG2_Y0_LO)
            mstore(add(ptr, 320), NG2_Y1_HI)
            mstore(add(ptr, 352), NG2_Y1_LO)
            // The pairing precompile checks encoding, curve and subgroup membership of every
            // point, so a malformed or non-G1 signature makes the call fail (-> invalid).
            mstore(0x00, 0)
            let success := staticcall(GAS_PAIRING, BLS12_PAIRING_CHECK, ptr, 768, 0x00, 0x20)
            valid := and(and(success, eq(returndatasize(), 0x20)), eq(mload(0x00), 1))
        }
        ok = true;
    }

    /// Writes the 256-byte group key at memory address `ptr`.
    function _writeGroupKey(uint256 ptr) private view {
        bytes32 w;
        w = _gk0;
        assembly ("memory-safe") { mstore(ptr, w) }
        w = _gk1;
        assembly ("memory-safe") { mstore(add(ptr, 0x20), w) }
        w = _gk2;
        assembly ("memory-safe") { mstore(add(ptr, 0x40), w) }
        w = _gk3;
        assembly ("memory-safe") { mstore(add(ptr, 0x60), w) }
        w = _gk4;
        assembly ("memory-safe") { mstore(add(ptr, 0x80), w) }
        w = _gk5;
        assembly ("memory-safe") { mstore(add(ptr, 0xa0), w) }
        w = _gk6;
        assembly ("memory-safe") { mstore(add(ptr, 0xc0), w) }
        w = _gk7;
        assembly ("memory-safe") { mstore(add(ptr, 0xe0), w) }
    }

    /// hash_to_curve to G1; writes the 128-byte EIP-2537 point at memory `out`.
    /// Returns false if a precompile call failed.
    function _hashToG1(bytes memory message, uint256 out) private view returns (bool ok) {
        // expand_message_xmd(message, DST, 128) with SHA-256 (b_in_bytes 32, s_in_bytes 64,
        // ell = 4): DST' = DST || I2OSP(len(DST), 1).
        bytes memory dstPrime = abi.encodePacked(DST, uint8(DST.length));
        bytes32 b0 = sha256(abi.encodePacked(bytes32(0), bytes32(0), message, uint16(128), uint8(0), dstPrime));
        bytes32 b1 = sha256(abi.encodePacked(b0, uint8(1), dstPrime));
        bytes32 b2 = sha256(abi.encodePacked(b0 ^ b1, uint8(2), dstPrime));
        bytes32 b3 = sha256(abi.encodePacked(b0 ^ b2, uint8(3), dstPrime));
        bytes32 b4 = sha256(abi.encodePacked(b0 ^ b3, uint8(4), dstPrime));

        // u0 = OS2IP(b1 || b2) mod p, u1 = OS2IP(b3 || b4) mod p (MODEXP with exponent 1;
        // the 64-byte result is exactly the EIP-2537 Fp encoding), then
        // H = MAP_FP_TO_G1(u0) + MAP_FP_TO_G1(u1). MAP_FP_TO_G1 clears the cofactor, and
        // clearing is a homomorphism, so this equals clear_cofactor(map(u0) + map(u1)).
        if (gasleft() < NEED_HASH) revert InsufficientGas();
        assembly ("memory-safe") {
            let m := mload(0x40)
            // m: MODEXP input (225 bytes) reused for both field elements.
            // m+256: G1ADD input (two G1 points, 256 bytes).
            mstore(m, 64) // base length
            mstore(add(m, 0x20), 1) // exponent length
            mstore(add(m, 0x40), 64) // modulus length
            mstore(add(m, 0x60), b1) // base (64 bytes)
            mstore(add(m, 0x80), b2)
            mstore8(add(m, 0xa0), 1) // exponent = 1
            mstore(add(m, 0xa1), P_HI) // modulus (64 bytes)
            mstore(add(m, 0xc1), P_LO)
            let fp := add(m, 0x200) // 64-byte field element scratch
            ok := staticcall(GAS_MODEXP, MODEXP, m, 225, fp, 64)
            ok := and(ok, eq(returndatasize(), 64))
            ok := and(ok, staticcall(GAS_MAP, BLS12_MAP_FP_TO_G1, fp, 64, add(m, 0x100), 128))
            ok := and(ok, eq(returndatasize(), 128))

            mstore(add(m, 0x60), b3)
            mstore(add(m, 0x80), b4)
            mstore8(add(m, 0xa0), 1)
            mstore(add(m, 0xa1), P_HI)
            mstore(add(m, 0xc1), P_LO)
            ok := and(ok, staticcall(GAS_MODEXP, MODEXP, m, 225, fp, 64))
            ok := and(ok, eq(returndatasize(), 64))
            ok := and(ok, staticcall(GAS_MAP, BLS12_MAP_FP_TO_G1, fp, 64, add(m, 0x180), 128))
            ok := and(ok, eq(returndatasize(), 128))

            ok := and(ok, staticcall(GAS_G1ADD, BLS12_G1ADD, add(m, 0x100), 256, out, 128))
            ok := and(ok, eq(returndatasize(), 128))
        }
    }
}
