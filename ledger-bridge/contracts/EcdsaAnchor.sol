// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title EcdsaAnchor
/// @notice Baseline for gas comparison with CheckpointAnchor: the scheme the threshold-BLS
///         anchor replaces. An owner manages a set of oracle addresses and a threshold m
///         (at least 1); a checkpoint is anchored with at least m ECDSA signatures from
///         distinct oracles.
///
/// Signed message (EIP-191 "personal_sign" of the raw 72 bytes):
///   digest = keccak256("\x19Ethereum Signed Message:\n72" || networkId || be64(epoch) || checkpointHash)
/// Each signature is 65 bytes r || s || v (v in {27, 28}, or {0, 1}); s must be in the lower
/// half of the curve order. Signatures must be ordered by strictly increasing signer address,
/// which makes the "distinct oracles" check a single comparison per signature.
///
/// Storage, events and idempotency rules are the same as CheckpointAnchor's.
contract EcdsaAnchor {
    error NotOwner();
    error BadThreshold();
    error AlreadyOracle(address oracle);
    error NotOracle(address signer);
    error TooFewSignatures(uint256 got, uint256 threshold);
    error BadSignature();
    error SignersNotIncreasing();
    error ConflictingAnchor(uint64 epoch, bytes32 existing);
    error ZeroCheckpointHash();

    event Anchored(uint64 indexed epoch, bytes32 checkpointHash, address submitter);
    event OracleAdded(address oracle);
    event OracleRemoved(address oracle);
    event ThresholdChanged(uint256 threshold);
    event OwnershipTransferred(address previousOwner, address newOwner);

    uint256 private constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    bytes32 public immutable networkId;
    address public owner;
    uint256 public threshold;
    uint256 public oracleCount;
    mapping(address => bool) public isOracle;

    mapping(uint64 => bytes32) public checkpointOf;
    mapping(uint64 => uint64) public anchoredAt;
    uint64 public latestEpoch;

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    constructor(bytes32 networkId_, address[] memory oracles, uint256 threshold_) {
        networkId = networkId_;
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
        for (uint256 i = 0; i < oracles.length; i++) {
            _addOracle(oracles[i]);
        }
        _setThreshold(threshold_);
    }

    // ---------------------------------------------------------------- owner

    function addOracle(address oracle) external onlyOwner {
        _addOracle(oracle);
    }

    function removeOracle(address oracle) external onlyOwner {
        if (!isOracle[oracle]) revert NotOracle(oracle);
        if (oracleCount - 1 < threshold) revert BadThreshold();
        isOracle[oracle] = false;
        oracleCount -= 1;
        emit OracleRemoved(oracle);
    }

    function setThreshold(uint256 threshold_) external onlyOwner {
        _setThreshold(threshold_);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function _addOracle(address oracle) private {
        if (oracle == address(0)) revert NotOracle(oracle);
        if (isOracle[oracle]) revert AlreadyOracle(oracle);
        isOracle[oracle] = true;
        oracleCount += 1;
        emit OracleAdded(oracle);
    }

    function _setThreshold(uint256 threshold_) private {
        if (threshold_ == 0 || threshold_ > oracleCount) revert BadThreshold();
        threshold = threshold_;
        emit ThresholdChanged(threshold_);
    }

    // ---------------------------------------------------------------- anchoring

    /// @notice The EIP-191 digest the oracles sign for (epoch, checkpointHash).
    function digest(uint64 epoch, bytes32 checkpointHash) public view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n72", networkId, epoch, checkpointHash));
    }

    /// @notice Anchors `checkpointHash` for `epoch` given >= threshold oracle signatures,
    ///         ordered by strictly increasing signer address.
    function anchor(uint64 epoch, bytes32 checkpointHash, bytes[] calldata signatures) external {
        if (checkpointHash == bytes32(0)) revert ZeroCheckpointHash();
        bytes32 existing = checkpointOf[epoch];
        if (existing != bytes32(0)) {
            if (existing == checkpointHash) return;
            revert ConflictingAnchor(epoch, existing);
        }
        uint256 m = threshold;
        if (signatures.length < m) revert TooFewSignatures(signatures.length, m);

        bytes32 d = digest(epoch, checkpointHash);
        address last = address(0);
        for (uint256 i = 0; i < signatures.length; i++) {
            address signer = _recover(d, signatures[i]);
            if (signer <= last) revert SignersNotIncreasing();
            if (!isOracle[signer]) revert NotOracle(signer);
            last = signer;
        }

        checkpointOf[epoch] = checkpointHash;
        anchoredAt[epoch] = uint64(block.number);
        if (epoch > latestEpoch) latestEpoch = epoch;
        emit Anchored(epoch, checkpointHash, msg.sender);
    }

    function _recover(bytes32 d, bytes calldata sig) private pure returns (address signer) {
        if (sig.length != 65) revert BadSignature();
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(sig.offset)
            s := calldataload(add(sig.offset, 0x20))
            v := byte(0, calldataload(add(sig.offset, 0x40)))
        }
        if (v < 27) v += 27;
        if (uint256(s) > HALF_N || (v != 27 && v != 28)) revert BadSignature();
        signer = ecrecover(d, v, r, s);
        if (signer == address(0)) revert BadSignature();
    }
}
